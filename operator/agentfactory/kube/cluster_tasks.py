"""The AgentTasks of a namespace as the task graph shows them, read with a person's
kubeconfig (`agentfactory graph --namespace`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory import API_VERSION
from agentfactory.core.phases import Phase
from agentfactory.kube.client import Kube, path_of
from agentfactory.pictures.graph import TaskNode

if TYPE_CHECKING:
    from agentfactory.kube.auth import Connection


async def task_nodes(connection: Connection, namespace: str) -> list[TaskNode]:
    async with Kube(connection=connection) as kube:
        tasks = await kube.list(path_of(API_VERSION, "agenttasks", namespace))
    nodes = []
    for task in tasks:
        spec, status = task.get("spec") or {}, task.get("status") or {}
        stage, attempt = status.get("stage"), status.get("attempt")
        merged = str(status.get("mergedSHA") or "")[:12]
        nodes.append(TaskNode(
            name=task["metadata"]["name"], phase=Phase(status.get("phase") or "Pending"),
            depends_on=tuple(spec.get("dependsOn") or ()),
            detail=merged or (f"{stage}#{attempt}" if stage and attempt else ""),
        ))  # fmt: skip
    return nodes
