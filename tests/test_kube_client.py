"""The operator's Kubernetes client against the real API server, over TLS with a kubeconfig."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube, KubeError, path_of

if TYPE_CHECKING:
    from pathlib import Path

    from tests.apiserver import ControlPlane


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
