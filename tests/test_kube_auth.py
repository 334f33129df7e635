"""The operator authenticates as every Kubernetes client does, against the real API server:
inside a pod with its service account's projected token and CA, outside with a kubeconfig (its
current context or another, client certificates, exec credential plugins whose tokens expire),
and always over verified TLS. Who the server took it for comes from a SelfSubjectReview."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import yaml
from testbed.apiserver import Authority, Credentials
from testbed.kube import Api, wait_for
from testbed.kubelet import kubelet_on

from agentfactory.kube.auth import AuthError, connect
from agentfactory.kube.client import Kube

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


async def whoami(kube: Kube) -> str:
    review = await kube.create(REVIEWS, REVIEW)
    return str(review["status"]["userInfo"]["username"])


def token_for(plane: ControlPlane, namespace: str, account: str, seconds: int = 600) -> str:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}}
    plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": seconds}}  # fmt: skip
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    return str(plane.request("POST", path, request)["status"]["token"])


async def test_a_kubeconfig_with_a_client_certificate(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    alice = Credentials(*control_plane.ca.issue("alice", groups=("team-a",)))
    config = control_plane.kubeconfig(tmp_path / "config", alice)
    async with Kube(connection=connect(str(config))) as kube:
        assert await whoami(kube) == "alice"


async def test_the_context_named_is_the_one_used(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig(tmp_path / "config").read_text())
    token = token_for(control_plane, namespace, "robot")
    config["users"].append({"name": "robot", "user": {"token": token}})
    config["contexts"].append({"name": "robot", "context": {"cluster": "test", "user": "robot"}})
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))  # as kubectl reads it
    async with Kube(connection=connect(context="robot")) as kube:
        assert await whoami(kube) == f"system:serviceaccount:{namespace}:robot"
    async with Kube(connection=connect()) as kube:
        assert await whoami(kube) == "admin", "the current context by default"


PLUGIN = """import json, pathlib, sys
token, expiry = pathlib.Path(sys.argv[1]).read_text().split()
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": token, "expirationTimestamp": expiry}}))
"""


async def test_an_exec_plugin_is_run_again_when_its_token_expires(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    plugin, state = tmp_path / "plugin.py", tmp_path / "token"
    plugin.write_text(PLUGIN)
    config = yaml.safe_load(control_plane.kubeconfig(tmp_path / "config").read_text())
    config["users"] = [{"name": "test", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
        "args": [str(plugin), str(state)], "interactiveMode": "Never"}}}]  # fmt: skip
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state.write_text(f"{token_for(control_plane, namespace, 'first')} {past}")
    async with Kube(connection=connect(str(tmp_path / "config"))) as kube:
        assert await whoami(kube) == f"system:serviceaccount:{namespace}:first"
        state.write_text(f"{token_for(control_plane, namespace, 'second')} {later}")
        assert await whoami(kube) == f"system:serviceaccount:{namespace}:second", "re-run"


def test_a_kubeconfig_that_skips_tls_verification_is_refused(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig(tmp_path / "config").read_text())
    cluster = config["clusters"][0]["cluster"]
    del cluster["certificate-authority"]
    cluster["insecure-skip-tls-verify"] = True
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    with pytest.raises(AuthError, match="insecure-skip-tls-verify"):
        connect(str(tmp_path / "config"))


async def test_a_server_whose_certificate_the_ca_did_not_sign_is_not_trusted(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig(tmp_path / "config").read_text())
    (tmp_path / "other").mkdir()  # a CA of its own: the server's certificate is not from it
    other = Authority(tmp_path / "other")
    config["clusters"][0]["cluster"]["certificate-authority"] = str(other.path)
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    async with Kube(connection=connect(str(tmp_path / "config"))) as kube:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await whoami(kube)


def test_with_nothing_to_go_on_the_error_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(AuthError, match="pass --kubeconfig FILE"):
        connect()


PROBE = """import asyncio
from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube

async def main():
    found = connect()
    async with Kube(connection=found) as kube:
        review = await kube.create("/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    print(found.source, "|", found.namespace, "|", review["status"]["userInfo"]["username"])

asyncio.run(main())
"""


def probe_pod(namespace: str) -> dict[str, Any]:
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                  "readOnlyRootFilesystem": True}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": {
        "serviceAccountName": "operator", "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "probe", "image": "agentfactory/operator:test",
                        "command": [sys.executable, "-c", PROBE],
                        "securityContext": restricted}]}}  # fmt: skip


async def test_in_a_pod_it_uses_the_service_accounts_projected_token_and_ca(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    async with kubelet_on(control_plane, tmp_path / "kubelet", namespace=namespace) as kubelet:
        control_plane.request("POST", pods, probe_pod(namespace))
        api = Api(control_plane.url, control_plane.ssl_context())
        done = await wait_for(api, pods, "probe",
                              lambda o: o["status"].get("phase") in ("Succeeded", "Failed"),
                              within=120)  # fmt: skip
        # Through the API server, which asks the kubelet (served in this event loop: no
        # blocking call here).
        async with api.session() as http, http.get(f"{api.url}{pods}/probe/log") as answer:
            log = await answer.text()
    assert done["status"]["phase"] == "Succeeded", (log, json.dumps(done["status"]))
    assert log.strip() == (
        f"the pod's service account | {namespace} | system:serviceaccount:{namespace}:operator"
    )
    assert kubelet.started == [f"{namespace}/probe"]
