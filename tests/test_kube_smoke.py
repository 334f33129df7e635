"""kopf runs for real against the real API server: the base the operator's tests stand on."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import kopf

from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


def factory(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
            "metadata": {"name": "shop", "namespace": namespace},
            "spec": {"repository": {"url": "/srv/git/shop.git"},
                     "checks": [{"name": "test", "command": "true"}]}}  # fmt: skip


async def test_kopf_watches_our_crd_through_the_api_server(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    registry = kopf.OperatorRegistry()
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    found = connect(str(control_plane.kubeconfig(tmp_path / "config")))

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=found.server, ca_path=found.ca_file,
                                   certificate_path=found.cert_file,
                                   private_key_path=found.key_file)  # fmt: skip

    @kopf.on.event("agentfactory.dev", "factoryspecs", registry=registry)
    async def on_event(name: str, type: str, **_: Any) -> None:
        await seen.put((type, name))

    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(
        registry=registry, namespaces=[namespace], standalone=True, stop_flag=stop))  # fmt: skip
    async with Kube(connection=found) as kube:
        await kube.create(f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}/factoryspecs",
                          factory(namespace))  # fmt: skip
    event = await asyncio.wait_for(seen.get(), timeout=30)
    stop.set()
    await asyncio.wait_for(operator, timeout=30)
    assert event[1] == "shop" and event[0] in ("ADDED", None)
