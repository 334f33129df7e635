"""What people ask of the operator outside the spec: human-action annotations on a task
(approve, retry, cancel), and issues on the forge that become tasks."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from agentfactory import API_VERSION
from agentfactory.core.intake import TAKEN_LABEL, intake_problem, task_from_issue
from agentfactory.core.observations import HumanAction
from agentfactory.forge.registry import issues
from agentfactory.kube.client import Kube, KubeError, path_of

if TYPE_CHECKING:
    from agentfactory.controller.credentials import Credentials
    from agentfactory.controller.journal import KubeJournal
    from agentfactory.controller.records import KubeStore
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.kube.view import View
    from agentfactory.loop.forge_sync import ForgeSync
    from agentfactory.loop.ports import Record
    from agentfactory.loop.reconciler import Reconciler

log = logging.getLogger("agentfactory.worker")
#: Human actions: annotation → the core's action name.
HUMAN: dict[str, Literal["approve", "retry", "cancel"]] = {
    "agentfactory.dev/approved-by": "approve",
    "agentfactory.dev/retry": "retry",
    "agentfactory.dev/cancel": "cancel",
}


@dataclass
class Annotations:
    """Consumes each human-action annotation once: removes it (guarded by its value, so a
    newer one set meanwhile survives), then acts. A crash between the two loses the action
    rather than doing it twice; the person sees it did not happen and sets it again."""

    namespace: str
    kube: Kube
    store: KubeStore
    journal: KubeJournal
    loop: Reconciler | None = None

    async def __call__(self, task: Record, factory: FactorySpecSpec) -> bool:
        annotations = task.raw["metadata"].get("annotations") or {}
        for key, action in HUMAN.items():
            if key not in annotations:
                continue
            value = str(annotations[key])
            escaped = key.replace("/", "~1")
            path = path_of(API_VERSION, "agenttasks", self.namespace, task.name)
            try:
                raw = await self.kube.json_patch(path, [
                    {"op": "test", "path": f"/metadata/annotations/{escaped}", "value": value},
                    {"op": "remove", "path": f"/metadata/annotations/{escaped}"},
                ])  # fmt: skip
            except KubeError as exc:
                if exc.status in (404, 409, 422):  # changed meanwhile: the next pass sees it
                    return True
                raise
            self.store.view.put("agenttasks", raw)
            human = HumanAction(action=action, by=value or "annotation")
            assert self.loop is not None  # noqa: S101 - set when the worker is composed
            decision = await self.loop.apply(self.store.record(raw), factory, human)
            if decision.ignored:
                why = f"{key}={value} was ignored: {decision.ignored}"
                await self.journal.warn(task, "HumanActionIgnored", why)
            return True
        return False


@dataclass
class Intake:
    """Each open issue with the factory's intake label becomes an AgentTask, once: the task's
    name comes from the issue, and the issue is labelled as taken afterwards (a crash between
    the two finds the task on the next poll). An issue that is not a task yet is told why,
    once per version of its text."""

    namespace: str
    kube: Kube
    view: View
    credentials: Credentials
    journal: KubeJournal
    sync: ForgeSync | None = None
    _told: set[tuple[str, int, int]] = field(default_factory=set)
    """(factory, issue, hash of its text): issues told why they are not a task yet."""

    async def __call__(self, factories: dict[str, FactorySpecSpec]) -> None:
        for name, factory in factories.items():
            try:
                await self._intake(name, factory)
            except Exception as exc:
                log.warning("%s/%s: issue intake failed: %s", self.namespace, name, exc)

    async def _intake(self, name: str, factory: FactorySpecSpec) -> None:
        wanted = factory.intake.github_issues if factory.intake else None
        if wanted is None or (self.sync is not None and not self.sync.due(name, "intake")):
            return
        if (forge := issues(await self.credentials.forge(name, factory))) is None:
            return
        for issue, labels in await asyncio.to_thread(forge.open_issues, wanted.label):
            if TAKEN_LABEL in labels:
                continue
            doc, problems = task_from_issue(issue, factory=name, namespace=self.namespace)
            if doc is None:
                seen = (name, issue.number, hash(issue.body))
                if seen not in self._told:
                    await asyncio.to_thread(forge.comment, issue.number, "intake",
                                            intake_problem(issue, problems))  # fmt: skip
                    self._told.add(seen)
                continue
            task = doc["metadata"]["name"]
            try:
                self.view.put("agenttasks", await self.kube.create(
                    path_of(API_VERSION, "agenttasks", self.namespace), doc))  # fmt: skip
            except KubeError as exc:
                if exc.status != 409:  # 409: made before a crash; label the issue now
                    raise
            text = (f"agentfactory took this issue as AgentTask `{task}` (namespace"
                    f" `{self.namespace}`): `kubectl get agenttask {task} -n {self.namespace}`."
                    " Its pull request will link back here.")  # fmt: skip
            await asyncio.to_thread(forge.take_issue, issue.number, text)
            raw = self.view.get("factoryspecs", self.namespace, name)
            if raw is not None:
                await self.journal.event(raw, "Normal", "TaskFromIssue",
                                         f"issue #{issue.number} became AgentTask {task}",
                                         about="FactorySpec")  # fmt: skip
