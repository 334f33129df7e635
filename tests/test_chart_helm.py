"""The chart through the real `helm`: lint, install into a real API server (which admits every
object it makes), and the objects as the server holds them: RBAC exactly as documented, the
restricted pod, the CRDs, monitoring; and values the schema rejects, with Helm's message."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest

from agentfactory.cli import build_parser
from agentfactory.controller.metrics import Metrics
from agentfactory.kube.view import View
from tests.helm import CHART, ERROR, ROOT, HelmError, installed, lint
from tests.rbac import documented, granted
from tests.test_images import UIDS

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

EVERYTHING: dict[str, Any] = {
    "replicaCount": 2,
    "peering": {"enabled": True, "lifetimeSeconds": 30},
    "watchNamespaces": ["team-a", "team-b"],
    "podDisruptionBudget": {"enabled": True},
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
        "service": {"annotations": {"example.com/scrape": "true"}},
    },
    "imagePullSecrets": [{"name": "registry"}],
    "serviceAccount": {"annotations": {"example.com/role": "operator"}},
    "operator": {"verbose": True, "extraEnv": [{"name": "TZ", "value": "UTC"}]},
    "commonLabels": {"team": "platform"},
    "podAnnotations": {"example.com/owner": "platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": {"a": "b"}}}}]}},
    "priorityClassName": "system-cluster-critical",
}  # fmt: skip
CLUSTER_WIDE = {**EVERYTHING, "clusterWide": True}
TEAMS = ("team-a", "team-b")
BUILT_IN = {"Deployment", "ServiceAccount", "Service", "Role", "RoleBinding", "ClusterRole",
            "ClusterRoleBinding", "PodDisruptionBudget", "ConfigMap", "NetworkPolicy",
            "CustomResourceDefinition", "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"}  # fmt: skip


@pytest.mark.parametrize("values", [{}, EVERYTHING, CLUSTER_WIDE],
                         ids=["defaults", "every-option", "every-option-cluster-wide"])  # fmt: skip
async def test_helm_lints_the_chart_without_warnings(
    values: dict[str, Any], tmp_path: Path
) -> None:
    messages = await lint(values, tmp_path)
    assert [m for m in messages if m[0] >= 2] == []


async def test_helm_lint_reports_a_template_that_does_not_render(tmp_path: Path) -> None:
    # The lint above can fail: a value the templates need, removed, is an error.
    messages = await lint({"metrics": {"serviceMonitor": {"enabled": True, "interval": None}},
                           "operator": None}, tmp_path)  # fmt: skip
    assert (ERROR, "templates/") in messages


async def test_the_default_install_runs_a_restricted_operator_in_its_namespace(
    bare_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    async with installed(bare_plane, {}, tmp_path) as release:
        deployment = release.one("Deployment")
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # Pod Security Standard "restricted", field by field.
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UIDS["operator"]  # the image's USER
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in security and "hostNetwork" not in pod
        assert [next(k for k in v if k != "name") for v in pod["volumes"]] == ["emptyDir", "secret"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == [
            "/tmp", "/var/run/agentfactory/gateway"]  # fmt: skip
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert deployment["spec"]["strategy"]["type"] == "Recreate"  # no two operators at once
        # The arguments are ones `agentfactory run` accepts, and watch the release namespace.
        args = build_parser().parse_args(container["args"])
        assert args.namespace == ["agentfactory"] and args.standalone
        assert container["image"] == "ghcr.io/agentfactory/operator:0.1.0"
        assert args.gateway_url == "http://af-agentfactory-gateway.agentfactory.svc:8080"
        # RBAC: one Role in the release's namespace, exactly the README's table.
        role = release.objects("Role")[("agentfactory", "af-agentfactory")]
        assert granted(role["rules"]) == documented()
        binding = release.objects("RoleBinding")[("agentfactory", "af-agentfactory")]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "af-agentfactory",
                                        "namespace": "agentfactory"}]  # fmt: skip
        assert pod["serviceAccountName"] == "af-agentfactory"
        assert release.objects("ClusterRole") == {}
        assert not any(r["apiGroups"] == ["apiextensions.k8s.io"] for r in role["rules"])
        # The CRDs, identical to crds/, kept on uninstall.
        crd_kind = "CustomResourceDefinition"
        crds = release.objects(crd_kind)
        assert sorted(name for _, name in crds) == [
            "agenttasks.agentfactory.dev", "factoryspecs.agentfactory.dev"]  # fmt: skip
        sent = {o["metadata"]["name"]: o for o in release.manifest if o["kind"] == crd_kind}
        for (_, name), crd in crds.items():
            shipped = yaml.safe_load((ROOT / "crds" / f"{name.split('.')[0]}.yaml").read_text())
            assert sent[name]["spec"] == shipped["spec"]
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
            assert conditions["Established"] == "True", "the server serves them"
        # The operator's own network: its metrics and health ports in; DNS, the API server
        # and HTTPS out, nothing else.
        policy = release.one("NetworkPolicy")["spec"]
        assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert [r["ports"][0]["port"] for r in policy["ingress"]] == [8080, 8081]
        assert [[p["port"] for p in r["ports"]] for r in policy["egress"]] == [
            [53, 53], [443, 6443], [443]]  # fmt: skip
        assert all("to" not in r for r in policy["egress"]), "ports, to any address"
        service = release.one("Service")
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
        assert not release.objects("ServiceMonitor")
        assert list(release.objects("PodDisruptionBudget")) == [
            ("agentfactory", "af-agentfactory-gateway")]  # fmt: skip
        assert "kubectl get agenttasks -w" in release.notes
        # The model gateway: restricted too, its own identity (get on Secrets, nothing else),
        # reached by agent pods and the operator only.
        gateway = release.one("Deployment", "gateway")
        spec = gateway["spec"]["template"]["spec"]
        (served,) = spec["containers"]
        assert served["securityContext"]["readOnlyRootFilesystem"] is True
        assert served["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert build_parser().parse_args(served["args"]).signing_key_file == (
            "/var/run/agentfactory/gateway/signing-key")  # fmt: skip
        assert spec["serviceAccountName"] == "af-agentfactory-gateway"
        own = release.objects("Role")[("agentfactory", "af-agentfactory-gateway")]
        assert own["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
        signing = release.one("Secret", "gateway")
        assert len(base64.b64decode(signing["data"]["signing-key"])) == 64
        gateway_policy = release.one("NetworkPolicy", "gateway")["spec"]
        assert [p["port"] for p in gateway_policy["ingress"][0]["ports"]] == [8080]
        assert release.one("Service", "gateway")["spec"]["ports"][0]["port"] == 8080


async def test_every_object_is_valid_kubernetes(bare_plane: ControlPlane, tmp_path: Path) -> None:
    async with installed(bare_plane, EVERYTHING, tmp_path, namespaces=TEAMS) as release:
        # The server admitted each one (the install succeeded); each is also valid against the
        # published schema of the oldest Kubernetes the chart supports.
        made = [obj for obj in release.manifest if obj["kind"] in BUILT_IN]
        assert {obj["kind"] for obj in made} == BUILT_IN - {"ClusterRole", "ClusterRoleBinding"}
        for obj in made:
            kubernetes_validate.validate(obj, "1.31", strict=True)
            assert release.objects(obj["kind"]), obj["kind"]


async def test_watched_namespaces_each_get_a_role_bound_to_the_operator(
    bare_plane: ControlPlane, tmp_path: Path
) -> None:
    async with installed(bare_plane, EVERYTHING, tmp_path, namespaces=TEAMS) as release:
        roles = {k: v for k, v in release.objects("Role").items() if "-gateway" not in k[1]}
        assert sorted(roles) == [("team-a", "af-agentfactory"), ("team-b", "af-agentfactory")]
        gateways = [k for k in release.objects("Role") if "-gateway" in k[1]]
        assert sorted(gateways) == [("team-a", "af-agentfactory-gateway"),
                                    ("team-b", "af-agentfactory-gateway")]  # fmt: skip
        for role in roles.values():
            assert granted(role["rules"]) == documented(peering=True)
        for (_, name), binding in release.objects("RoleBinding").items():
            assert binding["roleRef"]["name"] == name
            assert binding["subjects"][0]["namespace"] == "agentfactory"
        args = build_parser().parse_args(release.one("Deployment")["spec"]["template"]["spec"][
            "containers"][0]["args"])  # fmt: skip
        assert args.namespace == ["team-a", "team-b"] and not args.standalone
        assert args.peering == "af-agentfactory" and args.peering_lifetime == 30
        peering = release.objects("CustomResourceDefinition")[("", "kopfpeerings.kopf.dev")]
        assert peering["spec"]["scope"] == "Namespaced"
        assert release.one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
        assert release.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


async def test_cluster_wide_is_one_cluster_role_with_the_same_rules(
    bare_plane: ControlPlane, tmp_path: Path
) -> None:
    async with installed(bare_plane, CLUSTER_WIDE, tmp_path) as release:
        assert release.objects("Role") == {} and release.objects("RoleBinding") == {}
        assert release.one("ClusterRole", "gateway")["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]  # fmt: skip
        role = release.one("ClusterRole")
        assert granted(role["rules"]) == documented(peering=True, cluster_wide=True)
        assert release.one("ClusterRoleBinding")["subjects"][0]["name"] == "af-agentfactory"
        args = build_parser().parse_args(release.one("Deployment")["spec"]["template"]["spec"][
            "containers"][0]["args"])  # fmt: skip
        assert args.namespace is None  # every namespace
        crds = release.objects("CustomResourceDefinition")
        assert crds[("", "clusterkopfpeerings.kopf.dev")]["spec"]["scope"] == "Cluster"


async def test_crds_can_be_left_to_someone_else(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    values = {"crds": {"enabled": False}, "peering": {"enabled": True}}
    async with installed(control_plane, values, tmp_path, namespace=namespace) as release:
        assert release.objects("CustomResourceDefinition") == {}
        assert release.one("Deployment")


def exposed_metrics() -> set[str]:
    """The metric names the operator serves (a counter `x` is scraped as `x_total`)."""
    view = View()
    since = "2026-01-01T00:00:00Z"
    view.put("agenttasks", {"metadata": {"namespace": "n", "name": "t", "resourceVersion": "1"},
                            "spec": {"factoryRef": "f"},
                            "status": {"phase": "CI", "lastTransitionTime": since}})  # fmt: skip
    metrics = Metrics(lambda: view)
    metrics.attempts.labels("plan", "ok").inc()
    metrics.transitions.labels("x").inc()
    metrics.escalations.labels("x").inc()
    metrics.tokens.labels("n", "f").inc()
    metrics.cost.labels("n", "f").inc()
    metrics.stage_seconds.labels("plan").observe(1)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}  # fmt: skip


def referenced_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bagentfactory_[a-z_]+", text))


async def test_monitoring_alerts_and_dashboard_use_metrics_the_operator_serves(
    bare_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    served = exposed_metrics()
    async with installed(bare_plane, EVERYTHING, tmp_path, namespaces=TEAMS) as release:
        monitor = release.one("ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics",
                                                 "interval": "30s"}]  # fmt: skip
        service = release.one("Service")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        rules = release.one("PrometheusRule")["spec"]["groups"][0]["rules"]
        assert [r["alert"] for r in rules] == [
            "AgentFactoryTaskStuck",
            "AgentFactoryNeedsAttentionRising",
            "AgentFactoryBudgetBurn",
        ]
        by_alert = {r["alert"]: r for r in rules}
        assert "> 7200" in by_alert["AgentFactoryTaskStuck"]["expr"]  # stuckForMinutes: 120
        assert ">= 3" in by_alert["AgentFactoryNeedsAttentionRising"]["expr"]
        assert "> 50" in by_alert["AgentFactoryBudgetBurn"]["expr"]
        assert "{{ $labels.phase }}" in by_alert["AgentFactoryTaskStuck"]["annotations"]["summary"]
        for rule in rules:
            assert referenced_metrics(rule["expr"]) <= served, rule["alert"]
            assert rule["expr"].count("(") == rule["expr"].count(")")
        dashboard = release.one("ConfigMap")
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        board = json.loads(dashboard["data"]["agentfactory.json"])
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert referenced_metrics(" ".join(exprs)) <= served
        # Every metric the operator serves is on the dashboard or in an alert.
        documented_metrics = referenced_metrics((CHART / "README.md").read_text())
        bare = {re.sub(r"_(total|bucket|count|sum|created)$", "", m) for m in served}
        assert bare <= documented_metrics, "document every metric in the chart's README"


async def test_monitoring_needs_the_prometheus_operator(
    bare_plane: ControlPlane, tmp_path: Path
) -> None:
    with pytest.raises(HelmError, match='no matches for kind "ServiceMonitor"'):
        async with installed(bare_plane, {"metrics": {"serviceMonitor": {"enabled": True}}},
                             tmp_path, monitoring=False):  # fmt: skip
            pass


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1"),
        ({"watchNamespaces": ["Team_A"]},
         "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
        ({"operator": {"logFormat": "xml"}},
         "at '/operator/logFormat': value must be one of 'json', 'full', 'plain'"),
        ({"replicas": 2}, "at '': additional properties 'replicas' not allowed"),
        ({"metrics": {"prometheusRule": {"stuckForMinutes": "2h"}}},
         "at '/metrics/prometheusRule/stuckForMinutes': got string, want integer"),
    ],
)  # fmt: skip
async def test_helm_rejects_values_that_break_the_schema_with_their_message(
    values: dict[str, Any],
    message: str,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications") as refused:
        async with installed(control_plane, values, tmp_path, namespace=namespace):
            pass
    assert message in str(refused.value)


async def test_the_readme_quickstart_install_makes_what_its_next_commands_name(
    bare_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"helm install (\S+) charts/agentfactory --namespace (\S+) .*\n(.*)",
                        readme)  # fmt: skip
    assert command, "the quickstart's helm install"
    release, namespace = command[1], command[2]
    sets = dict(re.findall(r"--set ([\w.]+)=(\S+)", command[0]))
    values: dict[str, Any] = {}
    for dotted, value in sets.items():
        *parents, leaf = dotted.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    async with installed(bare_plane, values, tmp_path, namespace=namespace,
                         release=release) as made:  # fmt: skip
        deployment = made.objects("Deployment")
        # `kubectl -n factory rollout status deployment/agentfactory`
        rollout = re.search(r"kubectl -n (\S+) rollout status deployment/(\S+)", readme)
        assert rollout and (rollout[1], rollout[2]) in deployment
        (container,) = deployment[(rollout[1], rollout[2])]["spec"]["template"]["spec"][
            "containers"]  # fmt: skip
        assert container["image"] == "agentfactory/operator:0.1.0"
        assert f"--namespace={namespace}" in container["args"]  # watches the tasks' namespace
