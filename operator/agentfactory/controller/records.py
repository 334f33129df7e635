"""The operator's tasks as the reconcile loop reads them: AgentTasks from the view, parsed
once per resourceVersion, and their statuses written back with a conditional PATCH.

A status that does not validate is never rebuilt from the start (that would run a task's
stages again): the task is left alone, and a Warning says so once per version of it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agentfactory import API_VERSION
from agentfactory.core.explain import explain
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.mergepatch import merge_patch
from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus
from agentfactory.kube.client import Kube, KubeError, path_of
from agentfactory.loop.ports import Record

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agentfactory.kube.view import View

log = logging.getLogger("agentfactory.worker")


def status_body(raw: dict[str, Any], new: AgentTaskStatus) -> dict[str, Any]:
    """A merge patch that makes *raw*'s status equal *new*, applied only if *raw* is still
    the task's current version. It records the spec generation it was decided from."""
    generation = (raw.get("metadata") or {}).get("generation")
    if isinstance(generation, int):
        new = new.model_copy(update={"observed_generation": generation})
    data = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    body: dict[str, Any] = {"status": merge_patch(raw.get("status") or {}, data)}
    version = (raw.get("metadata") or {}).get("resourceVersion")
    if version:
        body["metadata"] = {"resourceVersion": version}
    return body


def parse(raw: dict[str, Any]) -> Record:
    """The task *raw* holds."""
    meta = raw.get("metadata") or {}
    created = meta.get("creationTimestamp")
    record = Record(name=str(meta.get("name", "")),
                    factory=str((raw.get("spec") or {}).get("factoryRef", "")), spec=None,
                    status=AgentTaskStatus(), uid=str(meta.get("uid") or ""),
                    created=datetime.fromisoformat(created) if created else None,
                    raw=raw)  # fmt: skip
    try:
        record.status = AgentTaskStatus.model_validate(raw.get("status") or {})
    except ValidationError as exc:
        record.unreadable = "; ".join(explain(exc, AgentTaskStatus, "status."))
    try:
        record.spec = AgentTaskSpec.model_validate(raw.get("spec") or {})
    except ValidationError as exc:
        record.problem = "; ".join(explain(exc, AgentTaskSpec, "spec."))
    return record


@dataclass
class KubeStore:
    """The namespace's tasks and factories in the view; statuses written to the API."""

    namespace: str
    kube: Kube
    view: View
    warn: Callable[[Record, str, str], Awaitable[None]]
    """Posts a Warning Event about a task (reason, message)."""
    _parsed: dict[str, tuple[str, Record]] = field(default_factory=dict)
    """Tasks as last parsed, with the resourceVersion they were parsed at."""
    _reported: set[tuple[str, str]] = field(default_factory=set)
    """(task, resourceVersion) pairs whose unreadable status was reported."""

    def record(self, raw: dict[str, Any]) -> Record:
        """The task *raw* holds, parsed once per resourceVersion (a pass reads every task)."""
        meta = raw.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        cached = self._parsed.get(meta.get("name", ""))
        if version and cached is not None and cached[0] == version:
            return cached[1]
        record = parse(raw)
        if version:
            self._parsed[record.name] = (version, record)
        return record

    def factories(self) -> dict[str, FactorySpecSpec]:
        out = {}
        for raw in self.view.in_namespace("factoryspecs", self.namespace):
            with contextlib.suppress(ValidationError):  # its own status says what is wrong
                out[raw["metadata"]["name"]] = FactorySpecSpec.model_validate(raw.get("spec"))
        return out

    def tasks(self) -> list[Record]:
        return [self.record(raw) for raw in self.view.in_namespace("agenttasks", self.namespace)]

    def task(self, name: str) -> Record | None:
        raw = self.view.get("agenttasks", self.namespace, name)
        return None if raw is None else self.record(raw)

    async def write(self, record: Record, status: AgentTaskStatus) -> Record | None:
        path = path_of(API_VERSION, "agenttasks", self.namespace, record.name) + "/status"
        try:
            raw = await self.kube.patch(path, status_body(record.raw, status))
        except KubeError as exc:
            if exc.status in (404, 409):  # changed or deleted meanwhile
                return None
            raise
        self.view.put("agenttasks", raw)
        return self.record(raw)

    async def fresh(self, name: str) -> Record | None:
        raw = await self.kube.get(path_of(API_VERSION, "agenttasks", self.namespace, name))
        if raw is None:
            return None
        self.view.put("agenttasks", raw)
        return self.record(raw)

    async def report_unreadable(self, factories: dict[str, FactorySpecSpec]) -> None:
        """Say once per version of a task that its status cannot be read, and touch nothing:
        a person fixes the status or recreates the task."""
        del factories
        for task in self.tasks():
            version = str(task.raw["metadata"].get("resourceVersion", ""))
            if task.unreadable is None or (task.name, version) in self._reported:
                continue
            self._reported.add((task.name, version))
            message = (f"the status does not validate ({task.unreadable}); the operator leaves"
                       " this task alone: fix it (kubectl patch --subresource=status) or delete"
                       " and recreate the task")[:1000]  # fmt: skip
            log.warning("%s/%s: %s", self.namespace, task.name, message)
            await self.warn(task, "StatusUnreadable", message)
