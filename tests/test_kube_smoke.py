"""kopf runs for real against kmock's emulator: the base the operator's tests stand on."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kopf
from kmock._internal.apps import Server

from tests.kube import Emulator, declare

FACTORY = {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
           "metadata": {"name": "shop", "namespace": "default"},
           "spec": {"repository": {"url": "/srv/git/shop.git"}}}  # fmt: skip


async def test_kopf_watches_our_crd_through_the_emulator() -> None:
    registry = kopf.OperatorRegistry()
    seen: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    url = ""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    @kopf.on.event("agentfactory.dev", "factoryspecs", registry=registry)
    async def on_event(name: str, type: str, **_: Any) -> None:
        await seen.put((type, name))

    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        url = str(server.url).rstrip("/")
        stop = asyncio.Event()
        operator = asyncio.create_task(kopf.operator(
            registry=registry, clusterwide=True, standalone=True, stop_flag=stop))  # fmt: skip
        async with aiohttp.ClientSession() as session:
            created = await session.post(
                f"{url}/apis/agentfactory.dev/v1alpha1/namespaces/default/factoryspecs",
                json=FACTORY,
            )
            assert created.status == 200
        event = await asyncio.wait_for(seen.get(), timeout=30)
        stop.set()
        await asyncio.wait_for(operator, timeout=30)
    assert event[1] == "shop" and event[0] in ("ADDED", None)
