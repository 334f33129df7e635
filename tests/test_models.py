"""The resource models: their defaults, Kubernetes spelling, status round trips."""

from __future__ import annotations

from pydantic import ValidationError
from testbed.builders import Driver

from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.phases import Phase
from agentfactory.core.task import AgentTaskStatus


def test_a_minimal_factory_gets_the_documented_defaults() -> None:
    spec = FactorySpecSpec.model_validate(
        {"repository": {"url": "/srv/git/app.git"}, "checks": [{"name": "t", "command": "make"}]}
    )
    dumped = spec.model_dump(by_alias=True)
    assert dumped["repository"]["baseBranch"] == "main"
    assert dumped["repository"]["branchPrefix"] == "factory/"
    assert dumped["retries"]["perStage"] == 2
    assert dumped["merge"] == {"method": "squash", "auto": True, "deleteBranch": True,
                               "speculationDepth": 4, "batchSize": 1}  # fmt: skip
    assert dumped["ci"]["source"] == "sandbox"
    assert dumped["guardrails"]["protectedPaths"] == []
    assert spec.guardrails.protected == [".github/workflows/**"], "built in"
    assert dumped["sandbox"]["resources"]["limits"]["ephemeral-storage"] == "10Gi"


def test_initialisms_are_spelled_the_kubernetes_way() -> None:
    spec = FactorySpecSpec.model_validate(
        {
            "repository": {"url": "x"},
            "checks": [{"name": "t", "command": "make"}],
            "agents": {"baseURL": "https://llm.example.test"},
            "budget": {"maxCostUSDPerTask": 3},
            "escalation": {"notify": {"mentionOnPR": ["@team/x"]}},
        }
    )
    dumped = spec.model_dump(by_alias=True)
    assert dumped["agents"]["baseURL"] == "https://llm.example.test"
    assert dumped["budget"]["maxCostUSDPerTask"] == 3
    assert dumped["escalation"]["notify"]["mentionOnPR"] == ["@team/x"]


def test_a_status_survives_a_round_trip_through_its_wire_form() -> None:
    status = Driver().to(Phase.MERGED).status
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["headSHA"] and wire["mergedSHA"] and wire["history"][0]["from"] == "Pending"
    assert AgentTaskStatus.model_validate(wire) == status


def test_status_written_by_a_newer_operator_still_reads() -> None:
    status = AgentTaskStatus.model_validate({"phase": "Queued", "someFutureField": 1})
    assert status.phase == Phase.QUEUED


def test_the_default_model_is_not_deprecated_by_the_sdk() -> None:
    # The SDK warns (and our suite fails on warnings) for deprecated models: a default that
    # reaches end of life would break every factory that relies on it.
    from anthropic.resources.messages.messages import DEPRECATED_MODELS

    from agentfactory.core.factory import DEFAULT_MODEL

    assert DEFAULT_MODEL not in DEPRECATED_MODELS


def test_protected_paths_add_to_the_built_in_ones_unless_told_to_replace_them() -> None:
    def protected(guardrails: dict[str, object]) -> list[str]:
        return FactorySpecSpec.model_validate({
            "repository": {"url": "x"}, "checks": [{"name": "t", "command": "make"}],
            "guardrails": guardrails,
        }).guardrails.protected  # fmt: skip

    assert protected({"protectedPaths": ["infra/**"]}) == [".github/workflows/**", "infra/**"]
    assert protected({"protectedPaths": ["infra/**"], "replaceBuiltinProtectedPaths": True}) == [
        "infra/**"
    ]


def test_a_factory_without_checks_is_refused_unless_a_person_approves_each_merge() -> None:
    def problems(spec: dict[str, object]) -> list[str]:
        try:
            FactorySpecSpec.model_validate({"repository": {"url": "x"}, **spec})
        except ValidationError as exc:
            return [f"{'.'.join(map(str, e['loc']))} {e['ctx']['field']}" for e in exc.errors()]
        return []

    assert problems({}) == [" checks"], "no checks said: refused"
    assert problems({"checks": []}) == [" merge.auto"], "none on purpose, but auto-merged"
    assert problems({"checks": [], "merge": {"auto": False}}) == []
    external = {"forge": "github", "credentials": {"token": {"secretName": "gh"}}}
    gate = {"source": "github-checks", "requiredChecks": ["ci"]}
    assert problems({"repository": {"url": "https://github.com/o/r", **external}, "ci": gate}) == []
