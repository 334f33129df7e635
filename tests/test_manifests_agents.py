"""The objects of an agent attempt and a factory's sandbox: valid Kubernetes objects (checked
against the real schema with kubernetes-validate), the restricted Pod Security Standard field
by field, ownership, labels, deterministic names, and no secret value where it does not belong."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from testbed.builders import factory

from agentfactory.core.executors import Attempt
from agentfactory.core.handoff import HandoffContract, Role, summary_of
from agentfactory.core.phases import Stage
from agentfactory.manifests.agents import (
    AttemptSecret,
    ManifestError,
    agent_network_policy,
    agent_pod,
    agent_service_account,
    gateway_port,
    input_files,
    secret_of,
)

K8S = "1.31"
ATTEMPT = Attempt(task="add-webhook", task_uid="uid-task", namespace="shop", factory="shop",
                  stage=Stage.CODE_REVIEW, attempt=2)  # fmt: skip
SPEC = factory(
    agents={"apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
            "constitution": {"name": "shop-constitution"}},
    sandbox={"runtimeClassName": "gvisor", "timeoutSeconds": 900},
)  # fmt: skip


def contract(feedback: str = "") -> HandoffContract:
    return HandoffContract(task="add-webhook", role=Role.CODE_REVIEWER, goal="g",
                           acceptance_criteria=["c"], scope=["src/**"], model="m",
                           feedback=feedback or None)  # fmt: skip


SECRET = AttemptSecret.of(ATTEMPT, input_files(contract()), {"token": "t"})


def pod() -> dict[str, Any]:
    return agent_pod(ATTEMPT, SPEC, role="code-reviewer", repo_url="https://git.example.test/s.git",
                     ref="a" * 40, secret=SECRET)  # fmt: skip


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(pod, id="pod"),
        pytest.param(lambda: SECRET.manifest(ATTEMPT, "uid-pod"), id="secret"),
        pytest.param(lambda: agent_service_account("shop", "shop", "uid-f"), id="serviceaccount"),
        pytest.param(lambda: agent_network_policy("shop", "shop", "uid-f", SPEC), id="netpol"),
    ],
)
def test_every_object_is_valid_against_the_kubernetes_schema(build: Any) -> None:
    kubernetes_validate.validate(build(), K8S, strict=True)


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    manifest = pod()
    spec = manifest["spec"]
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host), host
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
               "persistentVolumeClaim", "projected", "secret"}  # fmt: skip
    for volume in spec["volumes"]:
        kinds = set(volume) - {"name"}
        assert kinds <= allowed, f"volume {volume['name']} uses {kinds}"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "sysctls" not in spec["securityContext"]
    for container in containers(manifest):
        context = container["securityContext"]
        name = container["name"]
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["privileged"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert "procMount" not in context and "seLinuxOptions" not in context, name
        assert not any(p.get("hostPort") for p in container.get("ports", [])), name
        assert container["resources"]["limits"], f"{name} has no limits"


def test_the_pod_is_short_lived_isolated_and_owned_by_its_task() -> None:
    manifest = pod()
    spec, meta = manifest["spec"], manifest["metadata"]
    assert meta["name"] == "add-webhook-code-review-2"
    assert meta["ownerReferences"] == [{
        "apiVersion": "agentfactory.dev/v1alpha1", "kind": "AgentTask", "name": "add-webhook",
        "uid": "uid-task", "controller": True}]  # fmt: skip
    assert meta["labels"]["agentfactory.dev/stage"] == "code-review"
    assert meta["labels"]["agentfactory.dev/attempt"] == "2"
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 900
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == "agentfactory-agent-shop"
    assert spec["runtimeClassName"] == "gvisor"
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"}
    agent = spec["containers"][0]
    mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    assert mounts["/factory/input"]["readOnly"] is True
    assert agent["terminationMessagePath"] == "/factory/output/summary.json"
    assert "credentials" not in [m["name"] for m in agent["volumeMounts"]], (
        "only the checkout holds the forge credentials; the agent never does"
    )
    sources = next(v for v in spec["volumes"] if v["name"] == "input")["projected"]["sources"]
    assert sources == [
        {"secret": {"name": SECRET.name, "items": [{"key": "contract.json",
                                                    "path": "contract.json"}]}},
        {"configMap": {"name": "shop-constitution",
                       "items": [{"key": "AGENTS.md", "path": "constitution.md"}]}},
    ]  # fmt: skip
    credentials = next(v for v in spec["volumes"] if v["name"] == "credentials")["secret"]
    assert credentials["items"] == [{"key": "token", "path": "token"}], "the inputs stay out"
    assert secret_of(manifest) == SECRET.name


def test_an_attempts_secret_has_a_name_nobody_can_make_before_its_pod() -> None:
    # Anyone who may create Secrets could make one under a predictable name and have the pod
    # mount their contract: the name has a random part, which only the pod's spec tells.
    names = {AttemptSecret.of(ATTEMPT, {"contract.json": "{}"}, {}).name for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("add-webhook-code-review-2-") for name in names)
    bare = AttemptSecret.of(ATTEMPT, {"contract.json": "{}"}, {})
    made = agent_pod(ATTEMPT, SPEC, role="code-reviewer", repo_url="https://git.example.test/s.git",
                     ref="a" * 40, secret=bare)  # fmt: skip
    credentials = next(v for v in made["spec"]["volumes"] if v["name"] == "credentials")
    assert "secret" not in credentials, "no credentials: no key of the Secret is mounted there"
    with pytest.raises(ManifestError, match="named both an input and a credential"):
        AttemptSecret.of(ATTEMPT, {"token": "{}"}, {"token": "t"})


def test_secret_values_stay_in_the_secret() -> None:
    token = "ghs_should_not_leak_anywhere"
    secret = AttemptSecret.of(ATTEMPT, {"contract.json": "{}"}, {"token": token}).manifest(
        ATTEMPT, "uid-pod")  # fmt: skip
    assert secret["stringData"] == {"contract.json": "{}", "token": token}
    assert secret["immutable"] is True
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Pod", "deleted with its pod"
    assert token not in json.dumps(pod())
    env = pod()["spec"]["containers"][0]["env"]
    key = next(e for e in env if e["name"] == "ANTHROPIC_API_KEY")
    assert key["valueFrom"] == {"secretKeyRef": {"name": "anthropic", "key": "api-key"}}


def test_a_contract_too_big_for_a_secret_is_refused() -> None:
    with pytest.raises(ManifestError, match="more than a Secret holds"):
        AttemptSecret.of(ATTEMPT, input_files(contract(feedback="x" * 1_000_000)), {})


def test_the_network_policy_denies_ingress_and_limits_egress() -> None:
    policy = agent_network_policy("shop", "shop", "uid-f", SPEC)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    assert policy["podSelector"] == {"matchLabels": {"agentfactory.dev/factory": "shop"}}
    # The internet on 443, not the private, shared, loopback or link-local ranges inside it
    # (the IPv6 ones belong to an IPv6 block).
    private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
               "169.254.0.0/16"]  # fmt: skip
    assert policy["egress"][0] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}],
                                   "ports": [{"protocol": "TCP", "port": 443}]}  # fmt: skip
    both = factory(sandbox={"egress": {"cidrs": ["0.0.0.0/0", "::/0", "10.20.0.0/16"]}})
    blocks = [t["ipBlock"] for t in agent_network_policy("shop", "shop", "u", both)["spec"][
        "egress"][0]["to"]]  # fmt: skip
    assert blocks[1] == {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}
    assert blocks[2] == {"cidr": "10.20.0.0/16"}, "a private network named outright is allowed"
    assert {p["port"] for p in policy["egress"][1]["ports"]} == {53}


def test_the_summary_fits_a_termination_message() -> None:
    big = json.dumps({"role": "implementer", "status": "completed", "stoppedBy": "completed",
                      "diff": "+" * 100_000, "message": "m" * 10_000, "turns": 3})  # fmt: skip
    summary = summary_of(big)
    assert len(summary.encode()) <= 4096
    assert json.loads(summary)["truncated"] is True and "diff" not in summary


def test_the_ci_pod_runs_the_checks_from_its_input_and_reads_no_constitution_or_key() -> None:
    files = input_files(None, SPEC.checks)
    ci = agent_pod(ATTEMPT, SPEC, role=None, repo_url="https://git.example.test/s.git",
                   ref="f" * 40, secret=AttemptSecret.of(ATTEMPT, files, {}))  # fmt: skip
    assert ci["spec"]["activeDeadlineSeconds"] == SPEC.ci.timeout_seconds, "ci.timeoutSeconds"
    agent = ci["spec"]["containers"][0]
    assert agent["command"] == ["agentfactory", "checks"] and "--role" not in agent["args"]
    sources = next(v for v in ci["spec"]["volumes"] if v["name"] == "input")["projected"]
    assert [s["secret"]["items"] for s in sources["sources"]] == [
        [{"key": "checks.json", "path": "checks.json"}]
    ]
    assert [c["name"] for c in json.loads(files["checks.json"])] == [c.name for c in SPEC.checks]
    # The checks run the agent's code: the pod that runs them holds no model API key.
    assert "ANTHROPIC_API_KEY" not in json.dumps(ci)


def engine_pod(role: dict[str, Any]) -> dict[str, Any]:
    spec = factory(agents={"apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
                           "roles": {"codeReviewer": role}})  # fmt: skip
    return agent_pod(ATTEMPT, spec, role="code-reviewer", repo_url="https://git.example.test/s.git",
                     ref="a" * 40, secret=SECRET)  # fmt: skip


def test_an_agent_image_runs_between_the_checkout_and_the_factorys_collect_step() -> None:
    manifest = engine_pod({"engine": "image", "image": "registry.example.test/codex-wrap:2",
                           "command": ["/entrypoint.sh", "--quiet"]})  # fmt: skip
    kubernetes_validate.validate(manifest, K8S, strict=True)
    spec = manifest["spec"]
    checkout, engine = spec["initContainers"]
    (agent,) = spec["containers"]
    assert (checkout["name"], engine["name"], agent["name"]) == ("checkout", "engine", "agent")
    assert checkout["image"] == agent["image"] == SPEC.agents.image, "the factory's own steps"
    assert engine["image"] == "registry.example.test/codex-wrap:2"
    assert engine["command"] == ["/entrypoint.sh", "--quiet"] and "args" not in engine
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["AGENTFACTORY_ROLE"] == "code-reviewer"
    assert env["AGENTFACTORY_OUTPUT"] == "/factory/output/result.json"
    assert "ANTHROPIC_API_KEY" in env, "the image talks to the model"
    # The step after runs the checks on the image's code: it holds no key.
    assert agent["command"] == ["agentfactory", "collect"]
    assert not any(e["name"].startswith("ANTHROPIC") for e in agent["env"])
    # A kubelet mounts its own file at a terminationMessagePath: never the result file.
    assert "terminationMessagePath" not in engine
    assert {m["name"] for m in engine["volumeMounts"]} == {m["name"] for m in agent["volumeMounts"]}
    for container in (engine, agent):
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_claude_code_role_runs_the_agent_command_with_its_engine_and_image() -> None:
    manifest = engine_pod({"engine": "claude-code", "image": "registry.example.test/cc:1"})
    (agent,) = manifest["spec"]["containers"]
    assert agent["image"] == "registry.example.test/cc:1"
    assert agent["args"][:4] == ["--engine", "claude-code", "--role", "code-reviewer"]
    assert [c["name"] for c in manifest["spec"]["initContainers"]] == ["checkout"]
    builtin = pod()["spec"]["containers"][0]
    assert "--engine" not in builtin["args"], "the default stays as it was"


def test_with_a_gateway_agent_pods_may_reach_it_and_hold_only_their_token() -> None:
    policy = agent_network_policy(
        "shop", "shop", "uid-f", SPEC, gateway_port("http://gw.af.svc:8080")
    )
    kubernetes_validate.validate(policy, K8S, strict=True)
    to_gateway = policy["spec"]["egress"][-1]
    assert to_gateway["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert (
        to_gateway["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "gateway"
    )
    assert "gateway" not in json.dumps(agent_network_policy("shop", "shop", "uid-f", SPEC))
    manifest = agent_pod(ATTEMPT, SPEC, role="code-reviewer", repo_url="https://git.example.test/s.git",
                         ref="a" * 40, secret=SECRET,
                         gateway_url="http://gw.af.svc:8080")  # fmt: skip
    env = {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}
    assert env["ANTHROPIC_BASE_URL"]["value"] == "http://gw.af.svc:8080"
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET.name, "key": "model-token"}  # fmt: skip
    assert "anthropic" not in json.dumps(manifest), "the key's Secret is not named at all"
