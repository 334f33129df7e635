"""KubernetesExecutor against the emulator: what a launch creates, and in which order."""

from __future__ import annotations

import pytest

from agentfactory.core.phases import Stage
from agentfactory.kube.client import Kube, path_of
from agentfactory.kube.executor import KubernetesExecutor
from agentfactory.manifests.agents import MAX_CONTRACT_BYTES, Attempt, ManifestError
from tests.kube import emulated

NS = "shop"


async def test_inputs_too_large_for_a_config_map_create_nothing() -> None:
    # Checked before the pod is created: a pod without its inputs would wait forever in
    # ContainerCreating, and every retry would leave another.
    attempt = Attempt(task="t", task_uid="u", namespace=NS, factory="f", stage=Stage.PLAN,
                      attempt=1)  # fmt: skip
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": attempt.pod, "namespace": NS},
           "spec": {"containers": [{"name": "agent", "image": "agent"}]}}  # fmt: skip
    async with emulated() as (_, url), Kube(server=url) as kube:
        executor = KubernetesExecutor(kube)
        with pytest.raises(
            ManifestError, match=f"more than a ConfigMap holds \\({MAX_CONTRACT_BYTES}"
        ):
            await executor.launch(attempt, pod, {"contract.json": "x" * (MAX_CONTRACT_BYTES + 1)},
                                  {"token": "secret"})  # fmt: skip
        for kind in ("pods", "configmaps", "secrets"):
            assert await kube.list(path_of("v1", kind, NS)) == [], kind
