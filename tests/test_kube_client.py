"""The operator's Kubernetes client against the real API server, over TLS with a kubeconfig."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import warnings
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from testbed.apiserver import Authority
from testbed.identity import operator_kubeconfig

from agentfactory.kube.auth import Connection, connect
from agentfactory.kube.client import Kube, KubeError, http_session, path_of
from tests.proxy import Answer, FaultProxy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from testbed.apiserver import ControlPlane

    from tests.proxy import Request


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": name}}  # fmt: skip


def admin(plane: ControlPlane, tmp_path: Path) -> Kube:
    return Kube(connection=connect(str(plane.kubeconfig(tmp_path / "admin.kubeconfig"))))


async def test_get_create_ensure_list_and_delete(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cms = path_of("v1", "configmaps", namespace)
    async with admin(control_plane, tmp_path) as kube:
        assert await kube.get(f"{cms}/a") is None
        await kube.create(cms, configmap("a", team="x"))
        await kube.ensure(cms, configmap("b", team="y"))
        updated = {**configmap("b", team="y"), "data": {"k": "changed"}}
        assert (await kube.ensure(cms, updated))["data"] == {"k": "changed"}
        names = [o["metadata"]["name"] for o in await kube.list(cms, {"team": "x"})]
        assert names == ["a"]
        with pytest.raises(KubeError) as conflict:
            await kube.create(cms, configmap("a"))
        assert conflict.value.status == 409
        await kube.delete(f"{cms}/a")
        await kube.delete(f"{cms}/a")  # a second delete is not an error
        assert await kube.get(f"{cms}/a") is None


def test_paths() -> None:
    assert path_of("v1", "pods", "ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert path_of("agentfactory.dev/v1alpha1", "agenttasks", None) == (
        "/apis/agentfactory.dev/v1alpha1/agenttasks"
    )


async def test_a_patch_carrying_a_resource_version_is_refused_once_the_object_changed(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # Optimistic concurrency: the status writes rely on it.
    cms = path_of("v1", "configmaps", namespace)
    async with admin(control_plane, tmp_path) as kube:
        created = await kube.create(cms, configmap("a"))
        seen = created["metadata"]["resourceVersion"]
        changed = await kube.patch(f"{cms}/a", {"metadata": {"resourceVersion": seen},
                                                "data": {"k": "first"}})  # fmt: skip
        assert changed["metadata"]["resourceVersion"] != seen
        with pytest.raises(KubeError) as stale:
            await kube.patch(f"{cms}/a", {"metadata": {"resourceVersion": seen},
                                          "data": {"k": "second"}})  # fmt: skip
        assert stale.value.status == 409
        assert (await kube.get(f"{cms}/a") or {})["data"] == {"k": "first"}, "nothing lost"
        unguarded = await kube.patch(f"{cms}/a", {"data": {"k": "third"}})
        assert unguarded["data"] == {"k": "third"}, "without a resourceVersion: no check"


async def test_a_request_the_server_asks_to_retry_later_is_tried_again(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # 429 with Retry-After (priority and fairness, a watch cache re-initializing): waited out,
    # as client-go does, instead of failing the handler that asked.
    config = operator_kubeconfig(control_plane, namespace, tmp_path / "op.cfg")
    answers = iter([Answer(429, "TooManyRequests", "storage is (re)initializing", 0)] * 2)

    def busy(request: Request) -> Answer | None:
        return next(answers, None) if request.plural == "secrets" else None

    async with FaultProxy(control_plane) as proxy:
        proxy.faults.append(busy)
        through = yaml.safe_load(config.read_text())
        through["clusters"][0]["cluster"]["server"] = proxy.url
        config.write_text(yaml.safe_dump(through))
        async with Kube(connection=connect(str(config))) as kube:
            secrets = path_of("v1", "secrets", namespace)
            assert await kube.get(f"{secrets}/absent") is None
    codes = [r.status for r in proxy.seen if r.plural == "secrets"]
    assert codes == [429, 429, 404]


@pytest.fixture
def unanswering_tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS server that starts a stream and then never reads again, so a close_notify sent
    to it is never answered (a busy API server answers late; this one never does)."""
    authority = Authority(tmp_path)
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(*map(str, authority.issue("server", server=True,
                                                      hosts=("127.0.0.1",))))  # fmt: skip
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        raw, _ = listener.accept()
        with serving.wrap_socket(raw, server_side=True) as conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n")  # fmt: skip
            done.wait()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", authority.path
    done.set()
    thread.join()
    listener.close()


def test_a_stream_cut_short_leaves_no_socket_behind(
    unanswering_tls_server: tuple[str, Path],
) -> None:
    # Before Python 3.12.7, a TLS connection closed while its peer has not answered
    # close_notify keeps its socket after the event loop ends: a ResourceWarning, later, in
    # whatever runs then. A watch stopped mid-stream (kopf's at shutdown, ours once they see
    # what they waited for) is exactly that; the client's sessions abort it instead.
    url, ca = unanswering_tls_server

    async def watch_then_stop() -> None:
        context = Connection(server=url, ca_file=str(ca)).ssl_context()
        async with (
            http_session(context) as http,
            http.get(f"{url}/api/v1/pods?watch=1") as response,
        ):
            assert await response.content.readline() == b"{}\n"

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(watch_then_stop())
    finally:
        loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
