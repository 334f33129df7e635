"""KubernetesExecutor against the real API server: what a launch creates, and in which order."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from agentfactory.core.executors import Attempt
from agentfactory.core.phases import Stage
from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube, path_of
from agentfactory.kube.executor import KubernetesExecutor
from agentfactory.manifests.agents import MAX_CONTRACT_BYTES, ManifestError

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


async def test_inputs_too_large_for_a_config_map_create_nothing(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    # Checked before the pod is created: a pod without its inputs would wait forever in
    # ContainerCreating, and every retry would leave another.
    attempt = Attempt(task="t", task_uid="u", namespace=ns, factory="f", stage=Stage.PLAN,
                      attempt=1)  # fmt: skip
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": attempt.pod, "namespace": ns},
           "spec": {"containers": [{"name": "agent", "image": "agent"}]}}  # fmt: skip
    admin = connect(str(control_plane.kubeconfig(tmp_path / "admin")))
    async with Kube(connection=admin) as kube:
        executor = KubernetesExecutor(kube)
        with pytest.raises(
            ManifestError, match=f"more than a ConfigMap holds \\({MAX_CONTRACT_BYTES}"
        ):
            await executor.create(attempt, pod, {"contract.json": "x" * (MAX_CONTRACT_BYTES + 1)},
                                  {"token": "secret"})  # fmt: skip
        for kind in ("pods", "configmaps", "secrets"):
            made = [o["metadata"]["name"] for o in await kube.list(path_of("v1", kind, ns))]
            assert [m for m in made if m != "kube-root-ca.crt"] == [], kind  # the cluster's CA
