"""The operator's identity as the chart installs it: the chart's ServiceAccount, Role and
RoleBinding rendered by the real `helm template` and applied with `kubectl`, and a kubeconfig
holding a token for that ServiceAccount, so a request outside the chart's RBAC fails as it
would in a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.apiserver import ROOT, Credentials, run_tool

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

CHART = str(ROOT / "charts" / "agentfactory")
RELEASE = "agentfactory"


def chart_rbac(plane: ControlPlane, namespace: str, *values: str) -> str:
    """Install the chart's RBAC for a release in *namespace* (with `--set` *values*); the
    operator's user name."""
    shown = ["templates/serviceaccount.yaml", "templates/rbac.yaml"]
    if "gateway.enabled=false" not in values:
        shown.append("templates/gateway-rbac.yaml")
    if "peering.enabled=true" in values:
        shown.append("templates/peering.yaml")
    argv = ["template", RELEASE, CHART, "--namespace", namespace]
    for value in values:
        argv += ["--set", value]
    for template in shown:
        argv += ["--show-only", template]
    manifests = run_tool("helm", *argv)
    admin = plane.kubeconfig(plane.root / "admin.kubeconfig")
    run_tool("kubectl", "apply", "-f", "-", stdin=manifests, config=admin)
    return f"system:serviceaccount:{namespace}:{RELEASE}"


def operator_kubeconfig(plane: ControlPlane, namespace: str, path: Path, *values: str) -> Path:
    """A kubeconfig at *path* for the operator of a chart release in *namespace*: a token of
    the chart's ServiceAccount (an hour, as a projected token lives)."""
    chart_rbac(plane, namespace, *values)
    return account_kubeconfig(plane, namespace, RELEASE, path)


def account_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig at *path* with an hour's token of the ServiceAccount *account*."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}}  # fmt: skip
    minted = plane.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
    )
    return plane.kubeconfig(path, Credentials(token=minted["status"]["token"]), namespace)


#: The chart's gateway ServiceAccount of the release.
GATEWAY = f"{RELEASE}-gateway"
