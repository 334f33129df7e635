"""KubernetesExecutor against the real API server: what a launch creates, and in which order."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from testbed.builders import factory

from agentfactory.core.executors import Attempt, Launch
from agentfactory.core.handoff import HandoffContract, Role
from agentfactory.core.phases import Stage
from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube, path_of
from agentfactory.kube.executor import KubernetesExecutor
from agentfactory.manifests.agents import MAX_CONTRACT_BYTES, ManifestError

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


async def test_inputs_too_large_for_a_secret_create_nothing(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    # Checked before the pod is created: a pod without its Secret would wait forever in
    # ContainerCreating, and every retry would leave another.
    attempt = Attempt(task="t", task_uid="u", namespace=ns, factory="f", stage=Stage.PLAN,
                      attempt=1)  # fmt: skip
    contract = HandoffContract(task="t", role=Role.PLANNER, goal="g", acceptance_criteria=["c"],
                               scope=["**"], model="m",
                               feedback="x" * (MAX_CONTRACT_BYTES + 1))  # fmt: skip
    admin = connect(str(control_plane.kubeconfig(tmp_path / "admin")))
    async with Kube(connection=admin) as kube:
        executor = KubernetesExecutor(kube)
        with pytest.raises(
            ManifestError, match=f"more than a Secret holds \\({MAX_CONTRACT_BYTES}"
        ):
            launch = Launch(attempt, factory(), ref="a" * 40, base="a" * 40, contract=contract,
                            credentials={"token": "t"})  # fmt: skip
            await executor.launch(launch)
        for kind in ("pods", "secrets", "networkpolicies"):
            api = "networking.k8s.io/v1" if kind == "networkpolicies" else "v1"
            made = [o["metadata"]["name"] for o in await kube.list(path_of(api, kind, ns))]
            assert [m for m in made if m != "kube-root-ca.crt"] == [], kind  # the cluster's CA
