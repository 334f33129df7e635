"""After each pass: remove what no task needs any more, and keep each factory's counts.

- every pod of a task that is not its current attempt's goes (its Secret with it), except
  its kept failed pod while the task has not ended (Merged or Cancelled);
- the refs the forge kept for a deleted task's patches go with it;
- each factory's task counts and merge queue are written to its status when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfactory import API_VERSION
from agentfactory.core.factory_status import PROGRESS_FIELDS, PROGRESS_KEYS, progress
from agentfactory.core.forges import ForgeError
from agentfactory.core.mergepatch import merge_patch
from agentfactory.core.phases import Phase
from agentfactory.core.work import RunAttempt, work_for
from agentfactory.kube.client import Kube, KubeError, path_of
from agentfactory.kube.executor import KEPT
from agentfactory.loop.reconciler import task_info

if TYPE_CHECKING:
    from agentfactory.controller.credentials import Credentials
    from agentfactory.controller.journal import KubeJournal
    from agentfactory.controller.records import KubeStore
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.scheduler import TaskInfo
    from agentfactory.kube.executor import KubernetesExecutor

log = logging.getLogger("agentfactory.worker")
ENDED = (Phase.MERGED, Phase.CANCELLED)


@dataclass
class Housekeeping:
    """The chores of one namespace."""

    namespace: str
    kube: Kube
    store: KubeStore
    executor: KubernetesExecutor
    credentials: Credentials
    journal: KubeJournal

    async def __call__(self, factories: dict[str, FactorySpecSpec]) -> None:
        await self.clean_up(factories)
        await self.forget_deleted(factories)
        await self.report()

    async def clean_up(self, factories: dict[str, FactorySpecSpec]) -> None:
        view = self.store.view
        tasks = {t.name: t for t in self.store.tasks()}  # as this pass left them
        for pod in view.in_namespace("pods", self.namespace):
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            task = tasks.get(labels.get("agentfactory.dev/task", ""))
            owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
            if (task is None or task.unreadable or meta.get("deletionTimestamp")
                    or task.uid not in owners):  # fmt: skip
                continue  # another's pod, one we may not judge, or one going already
            factory = factories.get(task.factory)
            if factory is None:
                continue  # whether it is the current attempt's cannot be told
            work = work_for(task.name, task.status, factory)
            if isinstance(work, RunAttempt) and meta["name"] == work.name:
                continue
            if labels.get(KEPT) == "true" and task.status.phase not in ENDED:
                continue
            await self.executor.delete(self.namespace, meta["name"])

    async def forget_deleted(self, factories: dict[str, FactorySpecSpec]) -> None:
        """Delete the refs the forge kept for each deleted task's patches: the record lives
        as long as the task. (A task deleted while no operator ran keeps them.)"""
        for raw in self.store.view.take_deleted(self.namespace):
            task = self.store.record(raw)
            if task.unreadable or not task.status.patches or task.factory not in factories:
                continue
            forge = await self.credentials.forge(task.factory, factories[task.factory])
            try:
                refs = await asyncio.to_thread(forge.forget, task.name)
            except ForgeError as exc:
                log.warning("%s/%s: kept patches not removed: %s", self.namespace, task.name, exc)
                continue
            removed = ", ".join(refs) or "no refs"
            await self.journal.event(raw, "Normal", "KeptPatchesRemoved",
                                     f"the task was deleted: removed {removed}")  # fmt: skip

    async def report(self) -> None:
        """Keep each factory's task counts and merge queue in its status, written only when
        they changed (the factory handlers own the rest of that status)."""
        by_factory: dict[str, list[TaskInfo]] = {}
        for task in self.store.tasks():
            if task.unreadable is None:
                by_factory.setdefault(task.factory, []).append(task_info(task))
        view = self.store.view
        for raw in view.in_namespace("factoryspecs", self.namespace):
            name = raw["metadata"]["name"]
            current = progress(by_factory.get(name, []))
            fields = current.model_dump(mode="json", by_alias=True, exclude_none=True,
                                        include=PROGRESS_FIELDS)  # fmt: skip
            shown = raw.get("status") or {}
            change = merge_patch({k: shown[k] for k in PROGRESS_KEYS if k in shown}, fields)
            if not change:
                continue
            path = path_of(API_VERSION, "factoryspecs", self.namespace, name) + "/status"
            with contextlib.suppress(KubeError):  # deleted meanwhile: nothing to count
                view.put("factoryspecs", await self.kube.patch(path, {"status": change}))
