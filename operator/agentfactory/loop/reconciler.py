"""The reconcile loop: one pass moves every task of one store as far as it can go.

A pass is level-triggered and works from the tasks' statuses alone, so a driver restarted
at any moment resumes where the last one stopped:

1. people's actions (the driver's `Hooks.people`) and specs that stopped validating;
2. the scheduler's observations (dependencies, admission, the merge queue) and the merge
   queue's builds;
3. for every task, its forge's news (a pull request to open, reviews) and then the work
   the core says its status calls for (`core.work.work_for`): a stage attempt through the
   executor, checks on the forge, or a merge;
4. the driver's chores (`Hooks.after`).

The builds and the work of step 3 run one factory's tasks after another (they share its
forge: one clone, one merge queue) and factories side by side, so a slow fetch or merge
holds up only its own factory. Git and forge calls run in threads (asyncio's bounded pool).

Every observation goes through the core's `decide`; a decision is one status write, its
transitions told through the journal, then its actions performed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentfactory.core.actions import CancelStage, Notify, PushBranch
from agentfactory.core.executors import Attempt
from agentfactory.core.forges import ForgeError
from agentfactory.core.observations import QueueConflict, QueueRebased, SpecInvalid
from agentfactory.core.phases import Phase
from agentfactory.core.pipeline import Decision, TaskView, decide
from agentfactory.core.scheduler import Build, TaskInfo, schedule
from agentfactory.core.task import AgentTaskSpec, Scope
from agentfactory.core.work import Merge, RunAttempt, work_for
from agentfactory.loop.attempts import Attempts
from agentfactory.loop.forge_sync import ForgeSync
from agentfactory.loop.ports import Hooks
from agentfactory.stages import NO_FACTORY, merge_observation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from agentfactory.core.executors import Executor
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import Observation
    from agentfactory.loop.ports import Forges, Journal, Record, Store

log = logging.getLogger("agentfactory.loop")
#: How often a write refused because the task changed is decided again.
CONFLICT_RETRIES = 3


def task_info(record: Record) -> TaskInfo:
    """What the scheduler knows of a task."""
    spec, status = record.spec, record.status
    return TaskInfo(
        name=record.name,
        factory=record.factory,
        phase=status.phase,
        depends_on=tuple(spec.depends_on) if spec else (),
        scope=tuple(spec.scope.paths) if spec else (),
        priority=spec.priority if spec else 0,
        created=record.created,
        merge_running=status.phase == Phase.MERGING and status.attempt > 0,
        phase_since=status.last_transition_time,
        head_sha=status.head_sha,
        queue=status.queue,
        held=status.ci_held,
        ci_passed=status.ci_passed,
    )


@dataclass
class Reconciler:
    """Moves the tasks of one store."""

    store: Store
    executor: Executor
    forges: Forges
    journal: Journal
    namespace: str = ""
    hooks: Hooks = field(default_factory=Hooks)
    poll_seconds: float = 0
    """How often the forge is asked about one task's checks or reviews at most."""
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    attempts: Attempts = field(init=False)
    sync: ForgeSync = field(init=False)

    def __post_init__(self) -> None:
        self.attempts = Attempts(self.executor, self.forges, self.journal, self.namespace)
        self.sync = ForgeSync(self.forges, self.poll_seconds)

    # -- one pass --------------------------------------------------------------------------

    async def step(self) -> bool:
        """One pass; True when some task moved (so another pass follows at once)."""
        factories = self.store.factories()
        for before in self.hooks.before:
            await before(factories)
        tasks = [t for t in self.store.tasks() if t.unreadable is None]
        moved = False
        for task in tasks:
            factory = factories.get(task.factory)
            if task.spec is None and task.status.phase not in (Phase.FAILED, Phase.CANCELLED):
                invalid = SpecInvalid(message=task.problem or "")
                moved |= not (await self.apply(task, None, invalid)).ignored
            elif task.spec is not None and factory is not None:
                for people in self.hooks.people:
                    moved |= await people(task, factory)
        if moved:
            return True
        runnable = [t for t in tasks if t.spec is not None and t.factory in factories]
        result = schedule(factories, [task_info(t) for t in runnable])
        for name, observation in result.observations:
            if (found := self.store.task(name)) is not None:
                moved |= not (
                    await self.apply(found, factories[found.factory], observation)
                ).ignored
        if moved:
            return True
        if await self._by_factory(
            (found.factory, functools.partial(self._build, build, factories[found.factory]))
            for build in result.builds
            if (found := self.store.task(build.task)) is not None
        ):  # the stage work goes on at once, with the tasks as the builds left them
            moved = True
            runnable = [t for t in map(self.store.task, (t.name for t in runnable)) if t]
        await self._show_waiting(result.waiting)
        moved |= await self._by_factory(
            (task.factory, functools.partial(self._try_advance, task, factories[task.factory]))
            for task in runnable
        )
        for after in self.hooks.after:
            await after(factories)
        return moved

    @staticmethod
    async def _by_factory(jobs: Iterable[tuple[str, Callable[[], Awaitable[bool]]]]) -> bool:
        """Run each factory's jobs one after another (they share its forge: one clone, one
        merge queue) and factories side by side, so one factory's slow git or forge call
        holds up only its own tasks; whether any job moved a task."""
        lines: dict[str, list[Callable[[], Awaitable[bool]]]] = {}
        for factory, job in jobs:
            lines.setdefault(factory, []).append(job)

        async def line(queued: list[Callable[[], Awaitable[bool]]]) -> bool:
            moved = False
            for job in queued:
                moved |= await job()
            return moved

        return any(await asyncio.gather(*(line(queued) for queued in lines.values())))

    async def _try_advance(self, task: Record, factory: FactorySpecSpec) -> bool:
        """`_advance`, with its trouble told on the task instead of raised."""
        try:
            return await self._advance(task, factory)
        except ForgeError as exc:  # the forge's own words say it all: no traceback
            log.info("%s: its stage could not advance: %s", task.name, exc)
            await self._stuck(self.store.task(task.name) or task, exc)
        except Exception as exc:  # one task's trouble must not stop the others
            log.exception("%s: its stage could not advance; retrying", task.name)
            await self._stuck(self.store.task(task.name) or task, exc)
        return False

    async def _advance(self, task: Record, factory: FactorySpecSpec) -> bool:
        """The forge's news of the task, else the work its status calls for."""
        news = await self.sync.news(task, factory)
        if news is not None and not (await self.apply(task, factory, news)).ignored:
            return True
        work = work_for(task.name, task.status, factory)
        if task.spec is None or work is None:
            return False
        if isinstance(work, RunAttempt):
            ended = await self.attempts.advance(task, factory, work)
            if ended is None:
                return False  # running: its executor's news wakes the next pass
            if ended.keep:  # kept before the status tells of the failure it shows
                await self.attempts.remove(ended)
            decision = await self.apply(task, factory, ended.observation)
            if not ended.keep:  # gone once its outcome is recorded (or stale)
                await self.attempts.remove(ended)
            return not decision.ignored
        if isinstance(work, Merge):
            queued = task.status.queue is not None and task.status.queue.on_forge is not None
            if queued and not self.sync.due(task.name, "merge-queue"):
                return False  # in the forge's own merge queue: asked at the poll interval
            forge = await self.forges.forge(task.factory, factory)
            merged = await asyncio.to_thread(merge_observation, task.name, task.spec, work, forge)
            return not (await self.apply(task, factory, merged)).ignored
        verdict = await self.sync.checks(task, factory, work)
        return verdict is not None and not (await self.apply(task, factory, verdict)).ignored

    async def _build(self, build: Build, factory: FactorySpecSpec) -> bool:
        """Build a queued task's change where the merge queue wants it, and tell the core."""
        task = self.store.task(build.task)
        if task is None or task.status.head_sha != build.head_sha:
            return False  # it moved since the schedule was made: the next pass sees it
        forge = await self.forges.forge(task.factory, factory)
        try:
            built = await asyncio.to_thread(forge.rebase_onto, build.head_sha,
                                            upstream=build.upstream, onto=build.onto)  # fmt: skip
        except ForgeError as exc:
            await self._stuck(task, exc)
            return False
        ahead = list(build.ahead)
        observation: Observation = (
            QueueRebased(from_sha=build.head_sha, head_sha=built.head_sha, onto=build.onto,
                         ahead=ahead, covered=build.covered)
            if built.head_sha is not None
            else QueueConflict(from_sha=build.head_sha, onto=build.onto, ahead=ahead,
                               message=built.message)
        )  # fmt: skip
        return not (await self.apply(task, factory, observation)).ignored

    async def _show_waiting(self, waiting: dict[str, str]) -> None:
        """Say in a waiting task's status what it waits for (a status write, not a
        transition), so listing the tasks answers "why is it not running?"."""
        for name, message in waiting.items():
            task = self.store.task(name)
            if task is not None and task.status.message != message:
                await self._say(task, message)

    async def _stuck(self, task: Record, exc: Exception) -> None:
        """Tell why the task's stage does not advance (an unreachable repository, an API
        error): in its status message and a warning per new reason. The loop keeps trying;
        the phase stays, since nothing about the task failed."""
        status = task.status
        message = f"{status.stage} #{status.attempt} cannot advance: {exc}"[:1000]
        if status.message != message and (said := await self._say(task, message)) is not None:
            await self.journal.warn(said, "StageStuck", message)

    async def _say(self, task: Record, message: str) -> Record | None:
        """Write *message* into the task's status, nothing else; best effort (None when it
        was not written: the next pass says it again)."""
        status = task.status.model_copy(update={"message": message})
        try:
            return await self.store.write(task, status)
        except Exception as exc:
            log.warning("%s: status message not written: %s", task.name, exc)
            return None

    # -- applying decisions ------------------------------------------------------------------

    async def apply(
        self, task: Record, factory: FactorySpecSpec | None, observation: Observation
    ) -> Decision:
        """Decide, write the status once, tell the transitions, perform the actions (nothing
        of that when the core ignored the observation).

        The write is conditional on the version the decision was made from. When the task
        changed meanwhile, the observation is decided again on the task as it now is: the
        core ignores what no longer applies, so nothing is done twice."""
        for _ in range(CONFLICT_RETRIES):
            decision = self._decide(task, factory, observation)
            if decision.ignored:
                log.info("%s: %s ignored: %s", task.name, observation.kind, decision.ignored)
                return decision
            written = await self.store.write(task, decision.status)
            if written is None:
                fresh = await self.store.fresh(task.name)
                if fresh is None:
                    return Decision(task.status, ignored="the task was deleted")
                task = fresh
                continue
            warned = await self.journal.transitions(task, decision)
            await self._perform(written, factory, decision, warned)
            for applied in self.hooks.applied:
                await applied(written, factory, decision, observation)
            await self.sync.publish(written, factory, decision, observation)
            return decision
        return Decision(task.status, ignored=f"the task kept changing ({CONFLICT_RETRIES} tries)")

    def _decide(
        self, task: Record, factory: FactorySpecSpec | None, observation: Observation
    ) -> Decision:
        # A spec that does not validate can only be failed, which reads the status alone.
        spec = task.spec or AgentTaskSpec.model_construct(
            factory_ref=task.factory, goal="-", acceptance_criteria=[], scope=Scope(paths=["**"])
        )
        view = TaskView(task.name, spec, task.status)
        return decide(view, factory or NO_FACTORY, observation, now=self.now())

    async def _perform(
        self, task: Record, factory: FactorySpecSpec | None, decision: Decision, warned: set[str]
    ) -> None:
        """Carry out the decision's actions; *warned*: the reasons its transitions already
        told as warnings (a notification saying the same again would be noise)."""
        for action in decision.actions:
            if isinstance(action, PushBranch) and factory is not None:
                forge = await self.forges.forge(task.factory, factory)
                await asyncio.to_thread(forge.push_branch, action.branch, action.head_sha)
            elif isinstance(action, Notify) and action.reason not in warned:
                await self.journal.warn(task, action.reason, action.message)
            elif isinstance(action, CancelStage):
                attempt = Attempt(task=task.name, task_uid=task.uid, namespace=self.namespace,
                                  factory=task.factory, stage=action.stage,
                                  attempt=action.attempt)  # fmt: skip
                await self.executor.remove(attempt)


__all__ = ["CONFLICT_RETRIES", "Reconciler", "task_info"]
