"""The AgentTasks of a namespace as the task graph shows them, read with a person's
kubeconfig (`agentfactory graph --namespace`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory import API_VERSION
from agentfactory.core.task import AgentTaskStatus
from agentfactory.kube.client import Kube, path_of
from agentfactory.pictures.report import task_node

if TYPE_CHECKING:
    from agentfactory.kube.auth import Connection
    from agentfactory.pictures.graph import TaskNode


async def task_nodes(connection: Connection, namespace: str) -> list[TaskNode]:
    async with Kube(connection=connection) as kube:
        tasks = await kube.list(path_of(API_VERSION, "agenttasks", namespace))
    return [task_node(task["metadata"]["name"],
                      AgentTaskStatus.model_validate(task.get("status") or {}),
                      tuple((task.get("spec") or {}).get("dependsOn") or ()))
            for task in tasks]  # fmt: skip
