"""The operator's Kubernetes client against kmock's emulator over real HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from kmock._internal.apps import Server

from agentfactory.kube.client import Kube, KubeError, path_of
from tests.kube import Emulator, declare

if TYPE_CHECKING:
    from pathlib import Path

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


async def test_a_patch_carrying_a_resource_version_is_refused_once_the_object_changed() -> None:
    # Optimistic concurrency, as a real API server does it: the status writes rely on it.
    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        async with Kube(server=str(server.url).rstrip("/")) as kube:
            created = await kube.create(CMS, configmap("a"))
            seen = created["metadata"]["resourceVersion"]
            changed = await kube.patch(f"{CMS}/a", {"metadata": {"resourceVersion": seen},
                                                    "data": {"k": "first"}})  # fmt: skip
            assert changed["metadata"]["resourceVersion"] != seen
            with pytest.raises(KubeError) as stale:
                await kube.patch(f"{CMS}/a", {"metadata": {"resourceVersion": seen},
                                              "data": {"k": "second"}})  # fmt: skip
            assert stale.value.status == 409
            assert (await kube.get(f"{CMS}/a") or {})["data"] == {"k": "first"}, "nothing lost"
            unguarded = await kube.patch(f"{CMS}/a", {"data": {"k": "third"}})
            assert unguarded["data"] == {"k": "third"}, "without a resourceVersion: no check"


async def test_the_service_account_token_is_read_at_each_request(tmp_path: Path) -> None:
    # The kubelet rotates projected tokens in place; a client that read it once goes stale.
    seen: list[str] = []
    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        token = tmp_path / "token"
        async with Kube(server=str(server.url).rstrip("/"), token_file=token) as kube:
            for value in ("first", "rotated"):
                token.write_text(value + "\n")
                await kube.get(f"{CMS}/a")
                request = emulator.log[-1]
                seen.append(request.headers["Authorization"])
                assert request.headers["User-Agent"].startswith("agentfactory/")
    assert seen == ["Bearer first", "Bearer rotated"]
