"""A FactorySpec's status: conditions for every credential case and for invalid specs (with
the same field-and-fix words as `validate`), task counts, the merge queue, and condition
times that move only when a status flips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from testbed.builders import FACTORY, T0, merge

from agentfactory.core.factory_status import factory_status
from agentfactory.core.phases import Phase
from agentfactory.core.scheduler import TaskInfo
from agentfactory.core.task import QueuePlace

GITHUB = {"repository": {"url": "https://github.com/o/r.git", "forge": "github"}}


def decide(raw: dict[str, Any], secrets: set[str] = frozenset(), tasks: list[TaskInfo] = [],  # noqa: B006
           old: Any = None, now: Any = T0) -> Any:  # fmt: skip
    status, _ = factory_status(raw_spec=raw, generation=3, old=old, secrets=secrets, tasks=tasks,
                               now=now)  # fmt: skip
    return status


def conditions(status: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


KEYED = merge(FACTORY, {"agents": {"apiKeySecretRef": {"name": "anthropic", "key": "api-key"}}})

CASES = [
    pytest.param(KEYED, {"anthropic"}, ("True", "Reconciled"), ("True", "NoCredentialsNeeded"),
                 id="plain-git"),
    pytest.param(FACTORY, set(), ("False", "APIKeySecretMissing"), ("True", "NoCredentialsNeeded"),
                 id="no-model-key"),
    pytest.param(merge(KEYED, {**GITHUB, "repository": {**GITHUB["repository"],
                 "credentials": {"githubApp": {"secretName": "app"}}}}), {"app", "anthropic"},
                 ("True", "Reconciled"), ("True", "AppCredentials"), id="github-app"),
    pytest.param(merge(KEYED, {"repository": {"forge": "github",
                 "credentials": {"token": {"secretName": "tok"}}}}), {"tok", "anthropic"},
                 ("True", "Reconciled"), ("False", "TokenCannotBeScoped"), id="token-usable"),
    pytest.param(merge(FACTORY, {"repository": {"forge": "github",
                 "credentials": {"token": {"secretName": "tok"}}}}), set(),
                 ("False", "SecretMissing"), ("False", "SecretMissing"), id="token-missing"),
    pytest.param(merge(FACTORY, {"agents": {"apiKeySecretRef": {"name": "anthropic"}}}), set(),
                 ("False", "APIKeySecretMissing"), ("True", "NoCredentialsNeeded"),
                 id="api-key-missing"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "secrets", "ready", "credentials"), CASES)
def test_conditions_for_each_credential_case(
    raw: dict[str, Any], secrets: set[str], ready: tuple[str, str], credentials: tuple[str, str]
) -> None:
    status = decide(raw, secrets)
    assert conditions(status) == {"Ready": ready, "CredentialsValid": credentials}
    assert all(c.observed_generation == 3 for c in status.conditions)


def test_an_invalid_spec_sets_a_condition_with_the_field_and_the_fix() -> None:
    raw = merge(FACTORY, {"retries": {"perStage": -1}, "merge": {"method": "ff"}})
    status, spec = factory_status(raw_spec=raw, generation=1, old=None, secrets=set(), tasks=[],
                                  now=T0)  # fmt: skip
    assert spec is None
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.retries.perStage: is -1; use a value of at least 0" in ready.message
    assert "spec.merge.method: is 'ff'; use one of" in ready.message


def test_task_counts_and_the_merge_queue() -> None:
    tasks = [TaskInfo(name=n, factory="app", phase=p, merge_running=r, priority=o,
                      queue=QueuePlace(entered=T0) if p == Phase.MERGING else None)
             for n, p, r, o in (
        ("a", Phase.MERGED, False, 0), ("b", Phase.MERGING, True, 0),
        ("c", Phase.MERGING, False, 0), ("f", Phase.MERGING, False, 5),
        ("d", Phase.NEEDS_ATTENTION, False, 0), ("e", Phase.AWAITING_APPROVAL, False, 0),
    )]  # fmt: skip
    status = decide(FACTORY, tasks=tasks)
    counts = status.tasks
    assert (counts.total, counts.active, counts.merged, counts.needs_attention) == (6, 4, 1, 1)
    assert counts.by_phase == {"Merged": 1, "Merging": 3, "NeedsAttention": 1,
                               "AwaitingApproval": 1}  # fmt: skip
    assert status.merging == "b"
    assert status.merge_queue == ["f", "c"], "waiting ones, in the scheduler's merge order"


def test_condition_times_move_only_when_the_status_flips() -> None:
    first = decide(KEYED, {"anthropic"})
    again = decide(KEYED, {"anthropic"}, old=first, now=T0 + timedelta(minutes=5))
    assert again.conditions == first.conditions
    broken = decide(merge(KEYED, {"retries": {"perStage": -1}}), {"anthropic"}, old=again,
                    now=T0 + timedelta(minutes=9))  # fmt: skip
    ready = next(c for c in broken.conditions if c.type == "Ready")
    assert ready.last_transition_time == T0 + timedelta(minutes=9)


def test_a_model_key_secret_without_the_key_is_not_ready() -> None:
    status = decide(KEYED, {"anthropic": {"apikey": "sk-ant"}})  # type: ignore[arg-type]
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "APIKeySecretMissing")
    assert ready.message == (
        "spec.agents.apiKeySecretRef: Secret 'anthropic' has no key 'api-key' (it has apikey);"
        " add it, or name the key it has"
    )
