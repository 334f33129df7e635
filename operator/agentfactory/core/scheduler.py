"""The scheduler: which tasks may move, computed from every task's phase at once.

Pure and level-triggered: give it the tasks of a namespace (and their factories) as they
are now and it returns the observations to feed :func:`agentfactory.core.pipeline.decide`:

- `DependenciesReady` for Pending tasks whose `dependsOn` are all Merged;
- `DependencyCycle` for Pending tasks on a cycle (named, never waited on);
- `Admitted` for Queued tasks, by priority then age, while the factory has free slots
  (`concurrency.maxActiveTasks`) and, with `exclusivePaths`, no locked scope overlaps;
- `MergeSlotGranted` for the first task waiting to merge when the factory merges nothing;
- the merge queue's builds, `QueueSettled` for a held failure, and with `merge.batchSize`
  `QueueVerified` for the tasks a green batch carried and `BatchSplit` to bisect a red one.

Everything is linear in tasks plus dependency edges (cycle detection is an iterative
Tarjan), except the path-lock check, which compares a candidate with the locked scopes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentfactory.core.globs import scopes_overlap
from agentfactory.core.observations import (
    Admitted,
    BatchSplit,
    DependenciesReady,
    DependencyCycle,
    MergeSlotGranted,
    Observation,
    QueueSettled,
    QueueVerified,
)
from agentfactory.core.phases import ACTIVE, LOCKING, Phase

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.task import QueuePlace

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TaskInfo:
    """What the scheduler needs of one task."""

    name: str
    factory: str
    phase: Phase
    depends_on: tuple[str, ...] = ()
    scope: tuple[str, ...] = ("**",)
    priority: int = 0
    created: datetime | None = None
    merge_running: bool = False
    """In Merging with a merge attempt under way (not just waiting in the queue)."""
    phase_since: datetime | None = None
    """When the task entered its phase."""
    head_sha: str | None = None
    """The task's head (what the one behind it in the merge queue is built on)."""
    queue: QueuePlace | None = None
    """Its place in the merge queue."""
    held: bool = False
    """Its CI failed in the merge queue and waits for those ahead to merge."""
    ci_passed: bool = False
    """CI passed on its current head (its own run, or its batch's)."""


@dataclass
class Schedule:
    """What the scheduler decided in one pass."""

    observations: list[tuple[str, Observation]] = field(default_factory=list)
    """(task, observation) pairs, in the order to apply them."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Why a Pending or Queued task is still waiting, for its status message."""
    merge_queue: dict[str, list[str]] = field(default_factory=dict)
    """Per factory: tasks waiting to merge, in merge order."""
    builds: list[Build] = field(default_factory=list)
    """Queued tasks to build on the one ahead (or on the base), at most one per factory."""


@dataclass(frozen=True)
class Build:
    """Build *task*'s change on *onto* (the head of the task ahead; None: the base), carrying
    the changes of *ahead*; the driver does it on the forge and reports `QueueRebased` or
    `QueueConflict`."""

    task: str
    head_sha: str
    upstream: str | None
    """What its head was built on before (its own commits are those after it)."""
    onto: str | None
    ahead: tuple[str, ...]
    covered: bool = False
    """Verified by the CI run of the last task of its batch, not by a run of its own."""


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Each dependency cycle of *graph* once, as `[a, b, ..., a]`; edges to unknown nodes
    are ignored. Iterative, so a 100,000-task chain does not hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, edge = work.pop()
            if edge == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = graph.get(node, ())
            advanced = False
            while edge < len(successors):
                nxt = successors[edge]
                edge += 1
                if nxt not in graph:
                    continue
                if nxt not in index:
                    work.append((node, edge))
                    work.append((nxt, 0))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    cycles.append(_cycle_through(graph, set(component)))
    return cycles


def _cycle_through(graph: Mapping[str, Sequence[str]], component: set[str]) -> list[str]:
    """One concrete cycle inside a strongly connected *component*, from its smallest name."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in graph.get(node, ()):
                if nxt == start:
                    path = [start]
                    while node != start:
                        path.append(node)
                        node = parents[node]
                    return [start, *reversed(path[1:]), start]
                if nxt in component and nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start, start]


def ready_set(tasks: Iterable[TaskInfo]) -> list[str]:
    """Pending tasks whose every dependency exists and is Merged."""
    phases = {task.name: task.phase for task in tasks}
    return [
        task.name
        for task in tasks
        if task.phase == Phase.PENDING
        and all(phases.get(dep) == Phase.MERGED for dep in task.depends_on)
    ]


def _order(task: TaskInfo) -> tuple[int, datetime, str]:
    return (-task.priority, task.created or _EPOCH, task.name)


def schedule(factories: Mapping[str, FactorySpecSpec], tasks: Sequence[TaskInfo]) -> Schedule:
    """One scheduling pass over a namespace's tasks."""
    out = Schedule()
    by_name = {task.name: task for task in tasks}
    in_cycle: dict[str, list[str]] = {}
    for cycle in find_cycles({task.name: task.depends_on for task in tasks}):
        for name in cycle[:-1]:
            in_cycle.setdefault(name, cycle)
    for task in tasks:
        if task.phase != Phase.PENDING:
            continue
        if task.name in in_cycle:
            out.observations.append((task.name, DependencyCycle(cycle=in_cycle[task.name])))
            continue
        missing = [dep for dep in task.depends_on if dep not in by_name]
        unmerged = [
            dep for dep in task.depends_on if dep in by_name and by_name[dep].phase != Phase.MERGED
        ]
        if missing:
            out.waiting[task.name] = (
                f"waiting for tasks that do not exist: {missing}; create them or fix dependsOn"
            )
        elif unmerged:
            stuck = [
                d
                for d in unmerged
                if by_name[d].phase not in ACTIVE | {Phase.PENDING, Phase.QUEUED}
            ]
            out.waiting[task.name] = f"waiting for {', '.join(unmerged)} to merge" + (
                f" ({', '.join(stuck)} need a person)" if stuck else ""
            )
        else:
            out.observations.append((task.name, DependenciesReady()))

    by_factory: dict[str, list[TaskInfo]] = {}
    for task in tasks:
        by_factory.setdefault(task.factory, []).append(task)
    for factory_name, members in by_factory.items():
        spec = factories.get(factory_name)
        if spec is None:
            continue
        _admit(spec, members, out)
        _run_queue(spec, factory_name, members, out)
    return out


def _admit(spec: FactorySpecSpec, members: list[TaskInfo], out: Schedule) -> None:
    limits = spec.concurrency
    active = sum(1 for task in members if task.phase in LOCKING)
    locked = [task.scope for task in members if task.phase in LOCKING]
    for task in sorted((t for t in members if t.phase == Phase.QUEUED), key=_order):
        if active >= limits.max_active_tasks:
            out.waiting[task.name] = (
                f"waiting for a slot: {active} of concurrency.maxActiveTasks"
                f" {limits.max_active_tasks} in use"
            )
            continue
        if limits.exclusive_paths and any(scopes_overlap(task.scope, held) for held in locked):
            out.waiting[task.name] = "waiting for a running task whose scope.paths overlap"
            continue
        out.observations.append((task.name, Admitted()))
        locked.append(task.scope)
        active += 1


def merge_queue(members: Iterable[TaskInfo]) -> list[TaskInfo]:
    """The factory's merge queue in merge order (priority, then when each joined): tasks
    waiting to merge, and those verified again in it."""
    return sorted(
        (t for t in members if t.queue is not None and t.phase in (Phase.MERGING, Phase.CI)),
        key=lambda t: (-t.priority, t.queue.entered if t.queue else _EPOCH, t.name),
    )


def _run_queue(spec: FactorySpecSpec, factory_name: str, members: list[TaskInfo],
               out: Schedule) -> None:  # fmt: skip
    """The speculative merge queue (as Zuul's gate): the tasks at the front, up to
    `merge.depth` CI runs, are each built on top of all those ahead of it and verified side
    by side (with `merge.batchSize`, only the last of each batch runs CI, and the others
    merge on its green run). The front merges once what it was built on has merged and its
    head is verified. A task built
    on changes that left the queue, or on a head that has changed since, is built again;
    those behind follow, one place per pass. A task whose CI failed is held: it settles once
    all it carried merged (the failure is its own), is built again without any it carried
    that failed too or left, and meanwhile those behind it are built without it; the
    batch it carried is bisected. Nothing is built on a front that joined the queue
    verified on the base as it was then, until its merge has found whether the base moved
    (and rebuilt it if so)."""
    queue = merge_queue(members)
    out.merge_queue[factory_name] = [t.name for t in queue]
    depth = spec.merge.depth
    train = _train(queue, {t.name for t in members if t.phase == Phase.MERGED}, depth,
                   spec.merge_batch, merging=any(t.merge_running for t in members),
                   out=out)  # fmt: skip
    if not _verify_batches(train, depth, out) and train.build is not None:
        out.builds.append(train.build)  # while a red batch is bisected, what follows would carry it


@dataclass
class _Train:
    """The front of a factory's queue as it stands."""

    chain: list[TaskInfo] = field(default_factory=list)
    """The tasks built where they should be, front first: each carries those before it."""
    held: list[TaskInfo] = field(default_factory=list)
    """Held failures waiting to learn whose failure it is."""
    build: Build | None = None
    """The next task to build, on the end of the chain."""
    run: int = 0
    """How many tasks at the end of the chain wait for a run behind them (their batch's)."""
    runs: int = 0
    """The CI runs of the chain (its tasks not waiting for a batch)."""
    deferred: bool = False
    """The next task would run CI, and the depth's runs are in the chain: it waits."""


def _train(queue: list[TaskInfo], merged: set[str], depth: int, batch: int, *,
           merging: bool, out: Schedule) -> _Train:  # fmt: skip
    """The chain from the front, up to *depth* CI runs (a run verifies its batch), and the
    tasks of the batch filling behind them: they are built while the runs go, and the one
    that ends the batch runs CI once a run is free."""
    train = _Train()
    queued = {t.name for t in queue}
    held = {t.name for t in queue if t.held}
    chain = train.chain
    for task in queue:
        assert task.queue is not None  # noqa: S101 - merge_queue keeps only queued tasks
        if not task.held and train.runs >= depth and train.run >= batch - 1:
            train.deferred = True  # it would run CI: it waits for a free run
            return train
        before = chain[-1] if chain else None
        ahead = tuple(t.name for t in chain)
        onto = before.head_sha if before is not None else None
        if before is not None and onto is None:
            return train
        if task.held:
            carried = [name for name in task.queue.ahead if name not in merged]
            if not carried:
                out.observations.append((task.name, QueueSettled()))
                continue
            if all(name in queued and name not in held for name in carried):
                train.held.append(task)
                continue  # one of those may be the cause: it waits, out of the train
        elif _in_place(task.queue, ahead, onto, merged):
            verified = not task.queue.covered or task.ci_passed
            if not chain and task.phase == Phase.MERGING and not merging and verified:
                out.observations.append((task.name, MergeSlotGranted()))
            if not task.queue.built:
                return train  # its merge finds whether the base moved under it: then it is built
            chain.append(task)
            train.run = train.run + 1 if task.queue.covered else 0
            train.runs += not task.queue.covered
            continue
        if task.merge_running or task.head_sha is None:
            return train
        if onto is not None and task.queue.conflict == onto:
            return train  # it cannot be built on that head: it waits for that task to merge
        # It ends its batch when the batch is full, or when nothing waits behind it.
        covered = train.run < batch - 1 and task is not queue[-1]
        if covered or train.runs < depth:
            train.build = Build(task.name, task.head_sha, task.queue.onto, onto, ahead, covered)
        else:  # a run of its own would be one too many: it waits for a free one
            train.deferred = True
        return train  # those behind it are built on its new head, in a later pass
    return train


def _unverified(task: TaskInfo) -> bool:
    """A task waiting for its batch's run (`merge.batchSize`)."""
    return task.queue is not None and task.queue.covered and not task.ci_passed


def _verify_batches(train: _Train, depth: int, out: Schedule) -> bool:
    """Each task of the train that waits for its batch's run is verified by the first green
    run behind it: that run's head carried its change (the train is built in order).

    Those left with no run behind them that may verify them are split off, once no run
    ahead of them is still going. When that run failed (it is held), that is a bisection:
    up to `merge.speculationDepth` of them, evenly spaced, are verified on runs of their
    own at once, so one red change among n is found in about log(n) / log(depth + 1)
    rounds; True then, and nothing is built behind them meanwhile (it would carry the red
    change). When that run left the queue, the last of them is verified on its own."""
    waiting: list[TaskInfo] = []
    running = False
    for task in train.chain:
        if _unverified(task):
            waiting.append(task)
            continue
        if task.phase == Phase.MERGING and task.ci_passed:
            out.observations.extend(
                (t.name, QueueVerified(head_sha=t.head_sha or "", by=task.name)) for t in waiting
            )
        if task.phase == Phase.CI:
            running = True
        waiting = []
    names = {t.name for t in waiting}
    failed = [t for t in train.held if names & set(t.queue.ahead if t.queue else ())]
    if not waiting or running or ((train.build is not None or train.deferred) and not failed):
        return bool(waiting and failed)  # nothing stuck, or a run under way decides first
    ends = [len(waiting) - 1]
    if failed:  # it carried them and failed: they and it, in depth + 1 parts; each part's end
        parts, size = min(depth, len(waiting)) + 1, len(waiting) + 1
        ends = sorted({math.ceil((i + 1) * size / parts) - 1 for i in range(parts - 1)})
    by = failed[0].name if failed else None
    out.observations.extend(
        (waiting[i].name, BatchSplit(head_sha=waiting[i].head_sha or "", failed=by)) for i in ends
    )
    return bool(failed)


def _in_place(place: QueuePlace, ahead: tuple[str, ...], onto: str | None,
              merged: set[str]) -> bool:  # fmt: skip
    """Whether a queued task's head is built where it should be: on the head of the task
    ahead, carrying exactly those ahead (at the front: nothing that has not merged)."""
    unmerged = tuple(name for name in place.ahead if name not in merged)
    if onto is None:
        return not unmerged
    return place.onto == onto and unmerged == ahead
