"""The Kubernetes objects of one stage attempt and of a factory's sandbox, as plain dicts.

Pure builders (dicts in, dicts out) for the operator's KubernetesExecutor:

- the agent Pod `<task>-<stage>-<attempt>`: restartPolicy Never, activeDeadlineSeconds, no
  service-account token, Pod Security Standard "restricted" on every container, read-only
  root with emptyDir work directories, an init container that checks out the exact commit;
- its one Secret, owned by the pod: the inputs (the handoff contract, or the CI run's checks)
  and the credentials (only what the role needs, minted for this pod), under a name with a
  random part, so nobody can make it before the pod exists and have the pod mount theirs;
- per factory: a ServiceAccount with no API rights and a NetworkPolicy that denies ingress and
  allows egress only to DNS and the factory's CIDRs and ports.

The result channel needs no write access to anything: the runner writes a compact summary
as the container's termination message (at most 4 KiB, read from the pod status) and the full
result as the last line of its log (read once through `pods/log`); the pod holds no
Kubernetes credentials at all.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentfactory import API_VERSION
from agentfactory.core.executors import Attempt, LaunchError
from agentfactory.core.handoff import CHECK_LIST, SUMMARY_NAME

if TYPE_CHECKING:
    from agentfactory.core.common import Check
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.handoff import HandoffContract

INPUT_DIR = "/factory/input"
OUTPUT_DIR = "/factory/output"
WORKSPACE = "/workspace"
CREDENTIALS_DIR = "/factory/credentials"
SUMMARY_FILE = f"{OUTPUT_DIR}/{SUMMARY_NAME}"
RESULT_FILE = f"{OUTPUT_DIR}/result.json"
#: The log line that carries the whole result (the last one counts).
#: The label every object the operator makes carries (its watches and listings select on it).
MANAGED = {"app.kubernetes.io/managed-by": "agentfactory"}
AGENT_UID = 10001
#: The key of a stage pod's attempt token (for the model gateway) in its credentials Secret.
MODEL_TOKEN = "model-token"  # noqa: S105 - the name of a key, not a secret
#: The init container that runs an agent image (`engine: image`).
ENGINE_CONTAINER = "engine"
#: A Secret holds at most 1 MiB; leave room for the credentials and metadata.
MAX_CONTRACT_BYTES = 900 * 1024


class ManifestError(LaunchError, ValueError):
    """An object that could not be built as asked; the message says why."""


def attempt_labels(attempt: Attempt) -> dict[str, str]:
    """The labels of every object made for *attempt*."""
    return {
        "app.kubernetes.io/name": "agentfactory-agent",
        **MANAGED,
        "app.kubernetes.io/component": attempt.stage.slug,
        "agentfactory.dev/task": attempt.task,
        "agentfactory.dev/factory": attempt.factory,
        "agentfactory.dev/stage": attempt.stage.slug,
        "agentfactory.dev/attempt": str(attempt.attempt),
    }


def service_account_name(factory: str) -> str:
    return f"agentfactory-agent-{factory}"


def not_made_for(kind: str, obj: dict[str, Any], attempt: Attempt, owner_uid: str) -> str | None:
    """Why *obj* (found by an attempt's name) is not one the operator made for *attempt*, or
    None. Names are predictable, so anyone who may create pods or ConfigMaps in the namespace
    could create one first and hand back a result; the operator's objects carry its label, the
    attempt's labels and a controller reference to their owner's UID (the task's, or for a
    credentials Secret its pod's), and only those are adopted."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name", "")
    wanted = attempt_labels(attempt)
    wrong = sorted(k for k in (*MANAGED, "agentfactory.dev/task", "agentfactory.dev/attempt")
                   if labels.get(k) != wanted[k])  # fmt: skip
    if wrong:
        return (
            f"{kind} {name} was not made by the operator for {attempt.pod}: its labels"
            f" {', '.join(wrong)} differ"
        )
    owners = meta.get("ownerReferences") or []
    if not any(o.get("uid") == owner_uid and o.get("controller") for o in owners):
        return (
            f"{kind} {name} was not made by the operator for {attempt.pod}: it has no"
            f" controller reference to {owner_uid or 'its owner'}"
        )
    return None


def _owner(kind: str, name: str, uid: str, api_version: str = API_VERSION) -> dict[str, Any]:
    # No blockOwnerDeletion: where OwnerReferencesPermissionEnforcement is on (OpenShift, and
    # clusters that enable it), setting it needs `update` on the owner's finalizers, a right
    # the operator does not otherwise need. It would only hold a foreground deletion of the
    # task until its pods are gone; the operator's own finalizer already cleans them up.
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def _restricted() -> dict[str, Any]:
    """The container security context of the restricted Pod Security Standard, and more."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": AGENT_UID,
        "runAsGroup": AGENT_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(factory: FactorySpecSpec) -> dict[str, Any]:
    res = factory.sandbox.resources
    return {
        "requests": res.requests.model_dump(by_alias=True, exclude_none=True),
        "limits": res.limits.model_dump(by_alias=True, exclude_none=True),
    }


def input_files(
    contract: HandoffContract | None, checks: list[Check] | None = None,
    prove: dict[str, Any] | None = None,
) -> dict[str, str]:  # fmt: skip
    """The files under `/factory/input`: an agent's contract, or the CI pod's checks (and its
    break/fix settings)."""
    if contract is not None:
        return {"contract.json": contract.model_dump_json(by_alias=True, exclude_none=True)}
    files = {"checks.json": CHECK_LIST.dump_json(checks or [], by_alias=True).decode()}
    if prove is not None:
        files["prove.json"] = json.dumps(prove)
    return files


@dataclass(frozen=True)
class AttemptSecret:
    """What an attempt's pod mounts from its one Secret: the files under `/factory/input` and
    the credentials (plain strings: never log them)."""

    name: str
    inputs: dict[str, str]
    credentials: dict[str, str]

    @classmethod
    def of(
        cls, attempt: Attempt, inputs: dict[str, str], credentials: dict[str, str]
    ) -> AttemptSecret:
        """A new Secret for *attempt*; too large or ambiguous inputs fail here, before anything
        exists (a pod without its Secret would wait in ContainerCreating for ever)."""
        size = sum(len(text.encode()) for text in inputs.values())
        if size > MAX_CONTRACT_BYTES:
            raise ManifestError(
                f"the inputs of {attempt.pod} are {size} bytes, more than a Secret holds"
                f" ({MAX_CONTRACT_BYTES}); shorten the feedback or the context"
            )
        if shared := sorted(set(inputs) & set(credentials)):
            raise ManifestError(f"{attempt.pod}: {shared} named both an input and a credential")
        return cls(f"{attempt.pod}-{secrets.token_hex(4)}", dict(inputs), dict(credentials))

    def manifest(self, attempt: Attempt, pod_uid: str) -> dict[str, Any]:
        """The Secret, owned by the pod (*pod_uid*) so it goes with it."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.name,
                "namespace": attempt.namespace,
                "labels": attempt_labels(attempt),
                "ownerReferences": [_owner("Pod", attempt.pod, pod_uid, "v1")],
            },
            "immutable": True,
            "stringData": {**self.inputs, **self.credentials},
        }


def secret_of(pod: dict[str, Any]) -> str | None:
    """The name of the Secret a stage pod mounts its credentials from (its inputs too)."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    inputs: dict[str, Any] = next((v for v in volumes if v.get("name") == "input"), {})
    for source in (inputs.get("projected") or {}).get("sources") or []:
        if "secret" in source:
            return str(source["secret"]["name"])
    return None


def _items(keys: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "path": key} for key in sorted(keys)]


def agent_pod(
    attempt: Attempt, factory: FactorySpecSpec, *, role: str | None, repo_url: str, ref: str,
    secret: AttemptSecret, gateway_url: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The Pod of one agent attempt (*role* None: the sandbox CI run of the checks), mounting
    *secret*'s inputs and credentials. With *gateway_url*, its agent reaches the model through
    the gateway with the attempt's token (from its own Secret), never with the key."""
    agents = factory.agents
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp/home"},  # noqa: S108 - the pod's own emptyDir
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    # Only agents talk to the model; the CI pod runs the agent's code and holds no key.
    if gateway_url is not None and role is not None:
        token = {"name": secret.name, "key": MODEL_TOKEN}
        env.append({"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": token}})
        env.append({"name": "ANTHROPIC_BASE_URL", "value": gateway_url})
    elif agents.api_key_secret_ref is not None and role is not None:
        ref_key = agents.api_key_secret_ref
        env.append(
            {
                "name": "ANTHROPIC_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": ref_key.name, "key": ref_key.key}},
            }
        )
    if agents.base_url and role is not None and gateway_url is None:
        env.append({"name": "ANTHROPIC_BASE_URL", "value": agents.base_url})
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
        {"name": "output", "mountPath": OUTPUT_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, private to the pod
    ]
    sources: list[dict[str, Any]] = [
        {"secret": {"name": secret.name, "items": _items(secret.inputs)}}
    ]
    if agents.constitution is not None and role is not None:
        sources.append(
            {
                "configMap": {
                    "name": agents.constitution.name,
                    "items": [{"key": agents.constitution.key, "path": "constitution.md"}],
                }
            }
        )
    checkout = {
        "name": "checkout",
        "image": agents.image,
        "command": ["agentfactory", "checkout"],
        "args": [
            "--repo",
            repo_url,
            "--ref",
            ref,
            "--dest",
            WORKSPACE,
            "--credentials",
            CREDENTIALS_DIR,
        ],
        "env": env[:2],
        # What git said, in the pod's status, where the operator reads why a checkout failed.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _restricted(),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "volumeMounts": [
            *mounts[:1],
            *mounts[3:],
            {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
        ],
    }
    io = ["--input", INPUT_DIR, "--workspace", WORKSPACE, "--output", RESULT_FILE]
    settings = agents.roles.of(role) if role else None
    engine = settings.engine if settings is not None else "builtin"
    agent = {
        "name": "agent",
        "image": agents.image_of(role) if role and engine != "image" else agents.image,
        "command": ["agentfactory", "agent" if role else "checks"],
        "args": ["--role", role, *io] if role else io,
        "env": env,
        "securityContext": _restricted(),
        "resources": _resources(factory),
        "volumeMounts": mounts,
        "terminationMessagePath": SUMMARY_FILE,
        "terminationMessagePolicy": "File",
    }
    init = [checkout]
    if engine == "claude-code":
        agent["args"] = ["--engine", "claude-code", *agent["args"]]
    elif engine == "image" and settings is not None and role is not None:
        init.append(_engine_container(settings.image or agents.image, settings.command, role,
                                      env, mounts, _resources(factory)))  # fmt: skip
        # The factory's own step reads and checks what the image wrote; it runs the checks on
        # the image's code, so it holds no model key.
        agent.update(command=["agentfactory", "collect"], env=env[:2])
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The sandbox CI run is bounded by the CI stage's own deadline.
        "activeDeadlineSeconds": (
            factory.sandbox.timeout_seconds if role else factory.ci.timeout_seconds
        ),
        "serviceAccountName": service_account_name(attempt.factory),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": AGENT_UID,
            "runAsGroup": AGENT_UID,
            "fsGroup": AGENT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init,
        "containers": [agent],
        "volumes": [
            {"name": "workspace", "emptyDir": {}},
            {"name": "output", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "input", "projected": {"sources": sources, "defaultMode": 0o444}},
            # Only the credentials' keys (items left empty would mount every key).
            {
                "name": "credentials",
                "secret": {
                    "secretName": secret.name,
                    "items": _items(secret.credentials),
                    "defaultMode": 0o400,
                },
            }
            if secret.credentials
            else {"name": "credentials", "emptyDir": {"sizeLimit": "1Mi"}},
        ],
    }
    if factory.sandbox.runtime_class_name:
        spec["runtimeClassName"] = factory.sandbox.runtime_class_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": attempt.pod,
            "namespace": attempt.namespace,
            "labels": attempt_labels(attempt),
            "annotations": {"agentfactory.dev/ref": ref},
            "ownerReferences": [_owner("AgentTask", attempt.task, attempt.task_uid)],
        },
        "spec": spec,
    }


def _engine_container(
    image: str, command: list[str] | None, role: str, env: list[dict[str, Any]],
    mounts: list[dict[str, Any]], resources: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The container of an agent image (`engine: image`), run after the checkout and before
    the factory's step that reads its result. Where it finds things is in its environment as
    well as at the contract's fixed paths. It exits 0 whenever it wrote a result (completed or
    not): as an init container, a non-zero exit ends the pod before its result is read, so it
    counts as a crash, told by the tail of its log."""
    contract = [
        {"name": "AGENTFACTORY_ROLE", "value": role},
        {"name": "AGENTFACTORY_INPUT", "value": INPUT_DIR},
        {"name": "AGENTFACTORY_WORKSPACE", "value": WORKSPACE},
        {"name": "AGENTFACTORY_OUTPUT", "value": RESULT_FILE},
    ]
    container: dict[str, Any] = {
        "name": ENGINE_CONTAINER,
        "image": image,
        "env": [*env, *contract],
        "workingDir": WORKSPACE,
        "securityContext": _restricted(),
        "resources": resources,
        "volumeMounts": mounts,
        # Not the result file: a kubelet mounts a file of its own at this path, which would
        # hide the result from the step after.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if command is not None:
        container["command"] = list(command)
    return container


def _factory_metadata(name: str, factory: str, namespace: str, uid: str) -> dict[str, Any]:
    """Metadata of an object a factory owns (deleted with the factory)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            **MANAGED,
            "agentfactory.dev/factory": factory,
        },
        "ownerReferences": [_owner("FactorySpec", factory, uid)],
    }


def agent_service_account(factory: str, namespace: str, factory_uid: str) -> dict[str, Any]:
    """The identity agent pods run as: no token mounted, bound to no role."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _factory_metadata(
            service_account_name(factory), factory, namespace, factory_uid
        ),
        "automountServiceAccountToken": False,
    }


def network_policy_name(factory: str) -> str:
    """The NetworkPolicy that confines *factory*'s agent pods."""
    return f"agentfactory-agents-{factory}"


def _block(cidr: str, excepted: list[str]) -> dict[str, Any]:
    """An ipBlock of *cidr* less the *excepted* networks inside it (the API server refuses an
    `except` entry outside its `cidr`, or of the other address family)."""
    network = ipaddress.ip_network(cidr)

    def within(other: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        if isinstance(network, ipaddress.IPv4Network):
            return isinstance(other, ipaddress.IPv4Network) and other.subnet_of(network)
        return isinstance(other, ipaddress.IPv6Network) and other.subnet_of(network)

    inside = [e for e in excepted if (o := ipaddress.ip_network(e)) != network and within(o)]
    return {"ipBlock": {"cidr": cidr, **({"except": inside} if inside else {})}}


def gateway_port(url: str | None) -> int | None:
    """The model gateway's port in its URL (None: no gateway)."""
    if not url:
        return None
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def agent_network_policy(
    factory: str, namespace: str, factory_uid: str, spec: FactorySpecSpec,
    gateway: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Deny all ingress to the factory's agent pods; allow egress to DNS, the allowed networks
    and ports, and the model gateway's pods on its port (*gateway*) only."""
    egress_rules = spec.sandbox.egress
    egress: list[dict[str, Any]] = [
        {
            "to": [_block(cidr, egress_rules.except_cidrs) for cidr in egress_rules.cidrs],
            "ports": [{"protocol": "TCP", "port": port} for port in egress_rules.ports],
        }
    ]
    if egress_rules.allow_dns:
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        )
    if gateway is not None:
        gateways = {"app.kubernetes.io/component": "gateway",
                    "app.kubernetes.io/part-of": "agentfactory"}  # fmt: skip
        egress.append({"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": gateways}}],
                       "ports": [{"protocol": "TCP", "port": gateway}]})  # fmt: skip
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _factory_metadata(
            network_policy_name(factory), factory, namespace, factory_uid
        ),
        "spec": {
            "podSelector": {"matchLabels": {"agentfactory.dev/factory": factory}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }
