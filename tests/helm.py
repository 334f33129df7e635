"""The real `helm` CLI for the chart tests (built by tests/controlplane/build.sh): lint, and
install into a real API server, as the README's quickstart does; what the release made is
read back from the server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from testbed.apiserver import ApiError, scrubbed_env, tool
from testbed.builders import merge

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from testbed.apiserver import ControlPlane

ROOT = Path(__file__).parent.parent
CHART = ROOT / "charts" / "agentfactory"
SEVERITY = {"INFO": 1, "WARNING": 2, "ERROR": 3}
ERROR = SEVERITY["ERROR"]
#: Just enough of the Prometheus Operator's CRDs for the chart's monitoring objects.
MONITORING = {"servicemonitors": "ServiceMonitor", "prometheusrules": "PrometheusRule"}
OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


class HelmError(Exception):
    """Helm refused: what it said."""


async def helm(*argv: str, config: Path | None = None) -> str:
    """Run `helm` (against the kubeconfig *config*); its output, or HelmError."""
    extra = {"KUBECONFIG": str(config)} if config is not None else {}
    process = await asyncio.create_subprocess_exec(
        tool("helm"), *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=scrubbed_env(**extra),
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise HelmError(out.decode() + err.decode())
    return out.decode()


def chart_with(values: dict[str, Any], where: Path) -> Path:
    """A copy of the chart whose values.yaml is the chart's with *values* laid over it: Helm's
    lint reads only the chart's own values file."""
    copy = where / "agentfactory"
    shutil.copytree(CHART, copy)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    (copy / "values.yaml").write_text(json.dumps(merge(defaults, values), indent=2))
    return copy


async def lint(values: dict[str, Any], where: Path) -> list[tuple[int, str]]:
    """`helm lint` of the chart with *values*: (severity, path) of each message."""
    try:
        out = await helm("lint", str(chart_with(values, where)))
    except HelmError as failed:  # errors make it exit 1; the messages are the same
        out = str(failed)
    assert "1 chart(s) linted" in out, out
    # A message may run over lines; each starts with its severity in brackets.
    return [(SEVERITY[m[1]], m[2]) for m in re.finditer(r"^\[(INFO|WARNING|ERROR)\] ([^:]*):",
                                                       out, re.MULTILINE)]  # fmt: skip


@dataclass
class Release:
    """What `helm install` made, as the API server holds it, and the NOTES."""

    plane: ControlPlane
    manifest: list[dict[str, Any]]
    """The objects Helm sent, as rendered."""
    notes: str

    def objects(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The release's objects of *kind* as the server holds them, by (namespace, name);
        cluster-scoped ones have namespace ''."""
        found = {}
        for sent in self.manifest:
            if sent["kind"] != kind:
                continue
            meta = sent["metadata"]
            found[meta.get("namespace", ""), meta["name"]] = self.plane.request("GET", _path(sent))
        return found

    def one(self, kind: str, part: str = "operator") -> dict[str, Any]:
        """The release's one object of *kind* for its *part*: the operator's, or the model
        gateway's (named `<release>-gateway...`)."""
        found = [obj for (_, name), obj in self.objects(kind).items()
                 if ("-gateway" in name) == (part == "gateway")]  # fmt: skip
        assert len(found) == 1, f"{len(found)} {kind} objects of the {part}"
        return found[0]


def _path(obj: dict[str, Any]) -> str:
    """The REST path of an object of the chart's kinds."""
    plurals = {"Deployment": "deployments", "ServiceAccount": "serviceaccounts",
               "Service": "services", "Role": "roles", "RoleBinding": "rolebindings",
               "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
               "PodDisruptionBudget": "poddisruptionbudgets", "ConfigMap": "configmaps",
               "Secret": "secrets",
               "CustomResourceDefinition": "customresourcedefinitions",
               "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
               "NetworkPolicy": "networkpolicies",
               "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
               **{kind: plural for plural, kind in MONITORING.items()}}  # fmt: skip
    version = obj["apiVersion"]
    base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{scope}/{plurals[obj['kind']]}/{obj['metadata']['name']}"


def install_monitoring_crds(plane: ControlPlane) -> None:
    """The Prometheus Operator's two kinds the chart uses (schemas left open)."""
    for plural, kind in MONITORING.items():
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": f"{plural}.monitoring.coreos.com"},
               "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                        "names": {"kind": kind, "plural": plural},
                        "versions": [{"name": "v1", "served": True, "storage": True,
                                      "schema": {"openAPIV3Schema": OPEN}}]}}  # fmt: skip
        try:
            plane.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as exc:
            if exc.code != 409:
                raise
        plane.await_established(crd["metadata"]["name"])


@asynccontextmanager
async def installed(
    plane: ControlPlane, values: dict[str, Any], where: Path, *, monitoring: bool = True,
    namespace: str = "agentfactory", release: str = "af", namespaces: tuple[str, ...] = (),
) -> AsyncIterator[Release]:  # fmt: skip
    """`helm install` of the chart with *values* into *plane* (which serves the Prometheus
    Operator's kinds when *monitoring*), as an administrator who made *namespaces* first."""
    if monitoring:
        install_monitoring_crds(plane)
    for watched in namespaces:  # watched namespaces must exist first, as the docs say
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": watched}}
        plane.request("POST", "/api/v1/namespaces", body)
    config = plane.kubeconfig(where / "admin.kubeconfig")
    (where / "values.json").write_text(json.dumps(values))
    await helm("install", release, str(CHART), "--namespace", namespace, "--create-namespace",
               "--values", str(where / "values.json"), config=config)  # fmt: skip
    manifest = await helm("get", "manifest", release, "--namespace", namespace, config=config)
    notes = await helm("get", "notes", release, "--namespace", namespace, config=config)
    docs = [doc for doc in yaml.safe_load_all(manifest) if doc]
    for doc in docs:  # templates may leave the namespace to Helm, which sends the release's
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"].setdefault("namespace", namespace)
    yield Release(plane, docs, notes)
