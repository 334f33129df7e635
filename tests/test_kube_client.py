"""The operator's Kubernetes client against kmock's emulator over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from kmock._internal.apps import Server

from agentfactory.kube.client import Kube, KubeError, path_of
from tests.kube import Emulator, declare

CMS = path_of("v1", "configmaps", "shop")


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "data": {"k": name}}  # fmt: skip


async def test_get_create_ensure_list_and_delete() -> None:
    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        async with Kube(server=str(server.url).rstrip("/")) as kube:
            assert await kube.get(f"{CMS}/a") is None
            await kube.create(CMS, configmap("a", team="x"))
            await kube.ensure(CMS, configmap("b", team="y"))
            updated = {**configmap("b", team="y"), "data": {"k": "changed"}}
            assert (await kube.ensure(CMS, updated))["data"] == {"k": "changed"}
            names = [o["metadata"]["name"] for o in await kube.list(CMS, {"team": "x"})]
            assert names == ["a"], "labels filter even where the server ignores selectors"
            with pytest.raises(KubeError) as conflict:
                await kube.create(CMS, configmap("a"))
            assert conflict.value.status == 409
            await kube.delete(f"{CMS}/a")
            await kube.delete(f"{CMS}/a")  # a second delete is not an error
            assert await kube.get(f"{CMS}/a") is None


def test_paths() -> None:
    assert path_of("v1", "pods", "ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert path_of("agentfactory.dev/v1alpha1", "agenttasks", None) == (
        "/apis/agentfactory.dev/v1alpha1/agenttasks"
    )
