"""The scheduler: DAG readiness, cycles named and failed, priority then age, slots,
path locks, and one merge at a time per factory."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from testbed.builders import T0, Driver, factory, patch, sha

from agentfactory.core.observations import DependencyCycle
from agentfactory.core.phases import Phase
from agentfactory.core.scheduler import Build, TaskInfo, find_cycles, ready_set, schedule
from agentfactory.core.task import QueuePlace

P = Phase


def info(name: str, phase: Phase = P.PENDING, **kwargs: object) -> TaskInfo:
    return TaskInfo(name=name, factory="app", phase=phase, **kwargs)  # type: ignore[arg-type]


def kinds(tasks: list[TaskInfo], **factory_overrides: object) -> list[tuple[str, str]]:
    result = schedule({"app": factory(**factory_overrides)}, tasks)
    return [(name, obs.kind) for name, obs in result.observations]


def test_a_task_is_ready_only_when_every_dependency_is_merged() -> None:
    tasks = [
        info("base", P.MERGED),
        info("mid", P.CI),
        info("a", depends_on=("base",)),
        info("b", depends_on=("base", "mid")),
        info("c"),
    ]
    assert ready_set(tasks) == ["a", "c"]


def test_waiting_tasks_say_what_they_wait_for() -> None:
    tasks = [
        info("stuck", P.NEEDS_ATTENTION),
        info("a", depends_on=("stuck",)),
        info("b", depends_on=("nowhere",)),
    ]
    result = schedule({"app": factory()}, tasks)
    assert result.waiting["a"] == "waiting for stuck to merge (stuck need a person)"
    assert "do not exist: ['nowhere']" in result.waiting["b"]
    assert result.observations == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param({"a": ["b"], "b": ["a"]}, [["a", "b", "a"]], id="two"),
        pytest.param({"a": ["a"]}, [["a", "a"]], id="self"),
        pytest.param({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c", "a"]],
                     id="three-with-a-tail"),
        pytest.param({"a": ["b"], "b": []}, [], id="none"),
        pytest.param({"a": ["ghost"]}, [], id="unknown-dependency"),
    ],
)  # fmt: skip
def test_find_cycles_names_each_cycle(
    graph: dict[str, list[str]], expected: list[list[str]]
) -> None:
    assert find_cycles(graph) == expected


def test_two_separate_cycles_are_both_named() -> None:
    cycles = find_cycles({"a": ["b"], "b": ["a"], "x": ["y"], "y": ["z"], "z": ["x"]})
    assert sorted(cycles) == [["a", "b", "a"], ["x", "y", "z", "x"]]


def test_a_named_cycle_follows_real_edges_inside_a_tangle() -> None:
    graph = {"a": ["b", "c"], "b": ["c"], "c": ["a"], "d": ["d"]}
    cycles = find_cycles(graph)
    assert len(cycles) == 2
    for cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert all(nxt in graph[node] for node, nxt in itertools.pairwise(cycle))


def test_a_100k_chain_does_not_hit_the_recursion_limit() -> None:
    n = 100_000
    graph = {f"t{i}": [f"t{i + 1}"] for i in range(n)}
    graph[f"t{n}"] = ["t0"]
    (cycle,) = find_cycles(graph)
    assert len(cycle) == n + 2


def test_pending_tasks_on_a_cycle_get_the_cycle() -> None:
    tasks = [info("a", depends_on=("b",)), info("b", depends_on=("a",)), info("c")]
    result = schedule({"app": factory()}, tasks)
    cycles = {name: obs for name, obs in result.observations if isinstance(obs, DependencyCycle)}
    assert cycles["a"].cycle == ["a", "b", "a"] and cycles["b"].cycle == ["a", "b", "a"]
    assert ("c", "DependenciesReady") in [(n, o.kind) for n, o in result.observations]


def test_admission_goes_by_priority_then_age_within_max_active_tasks() -> None:
    tasks = [
        info("old-low", P.QUEUED, created=T0, scope=("a/**",)),
        info("new-high", P.QUEUED, created=T0 + timedelta(hours=2), priority=5, scope=("b/**",)),
        info("mid-low", P.QUEUED, created=T0 + timedelta(hours=1), scope=("c/**",)),
    ]
    assert kinds(tasks, concurrency={"maxActiveTasks": 2}) == [
        ("new-high", "Admitted"),
        ("old-low", "Admitted"),
    ]


def test_running_tasks_use_up_slots() -> None:
    tasks = [
        info("running", P.IMPLEMENTING, scope=("a/**",)),
        info("waiting", P.QUEUED, scope=("b/**",)),
    ]
    result = schedule({"app": factory(concurrency={"maxActiveTasks": 1})}, tasks)
    assert result.observations == []
    assert "1 of concurrency.maxActiveTasks 1" in result.waiting["waiting"]


def test_overlapping_scopes_never_run_at_once_but_others_pass_them() -> None:
    tasks = [
        info("holder", P.AWAITING_APPROVAL, scope=("src/api/**",)),
        info("blocked", P.QUEUED, priority=9, scope=("src/**/handlers.py",)),
        info("free", P.QUEUED, scope=("docs/**",)),
    ]
    assert kinds(tasks, concurrency={"maxActiveTasks": 5}) == [("free", "Admitted")]


def test_two_queued_tasks_with_overlapping_scopes_are_not_admitted_together() -> None:
    tasks = [
        info("first", P.QUEUED, created=T0, scope=("src/**",)),
        info("second", P.QUEUED, created=T0 + timedelta(1), scope=("src/a.py",)),
    ]
    assert kinds(tasks, concurrency={"maxActiveTasks": 5}) == [("first", "Admitted")]


def test_without_exclusive_paths_overlap_is_allowed() -> None:
    tasks = [
        info("first", P.QUEUED, scope=("src/**",)),
        info("second", P.QUEUED, scope=("src/a.py",)),
    ]
    overrides = {"concurrency": {"maxActiveTasks": 5, "exclusivePaths": False}}
    assert len(kinds(tasks, **overrides)) == 2


def queued(name: str, minute: int, phase: Phase = P.MERGING, *, head: int | None = None,
           onto: int | None = None, ahead: tuple[str, ...] = (), built: bool = False,
           covered: bool = False, **kwargs: object) -> TaskInfo:  # fmt: skip
    place = QueuePlace(entered=T0 + timedelta(minutes=minute), ahead=list(ahead),
                       onto=sha(onto) if onto is not None else None,
                       built=built or onto is not None, covered=covered)  # fmt: skip
    return info(name, phase, queue=place, head_sha=sha(head if head is not None else minute + 1),
                **kwargs)  # fmt: skip


def test_one_merge_at_a_time_in_queue_order() -> None:
    queue = [queued("later", 5), queued("earlier", 0)]
    result = schedule({"app": factory(merge={"speculationDepth": 1})}, queue)
    assert [(n, o.kind) for n, o in result.observations] == [("earlier", "MergeSlotGranted")]
    assert result.merge_queue["app"] == ["earlier", "later"]
    assert result.builds == [], "one at a time: the one behind waits for its turn"
    busy = [*queue, queued("merging", 9, merge_running=True)]
    assert kinds(busy) == [], "never two merges at once, whatever the order"


def test_the_queue_builds_each_task_on_the_one_ahead_one_place_per_pass() -> None:
    queue = [queued("a", 0, head=1), queued("b", 1, head=2), queued("c", 2, head=3)]
    result = schedule({"app": factory()}, queue)
    assert [(n, o.kind) for n, o in result.observations] == [("a", "MergeSlotGranted")]
    assert result.builds == [], "a's merge first finds whether the base moved under it"
    queue[0] = queued("a", 0, P.CI, head=1, built=True)  # it had: a was rebuilt, in CI again
    result = schedule({"app": factory()}, queue)
    assert result.observations == []
    assert result.builds == [Build("b", sha(2), None, sha(1), ("a",))]
    # b was built on a (its new head 0x22): c follows on b's new head.
    queue[1] = queued("b", 1, P.CI, head=0x22, onto=1, ahead=("a",))
    again = schedule({"app": factory()}, queue)
    assert again.builds == [Build("c", sha(3), None, sha(0x22), ("a", "b"))]
    queue[2] = queued("c", 2, P.CI, head=0x33, onto=0x22, ahead=("a", "b"))
    assert schedule({"app": factory()}, queue).builds == [], "the train stands"


def test_only_the_speculation_depth_is_built_and_rebase_merges_build_nothing() -> None:
    queue = [
        queued("a", 0, head=1, built=True),
        queued("b", 1, P.CI, head=2, onto=1, ahead=("a",)),
        queued("c", 2, head=3),
    ]
    assert schedule({"app": factory(merge={"speculationDepth": 2})}, queue).builds == []
    rebase = factory(merge={"method": "rebase"})
    assert schedule({"app": rebase}, [queued("a", 0), queued("b", 1)]).builds == []


def test_the_front_merges_only_once_everything_it_carries_has_merged() -> None:
    front = queued("b", 1, head=2, onto=1, ahead=("a",))
    merged_a = info("a", P.MERGED)
    assert kinds([merged_a, front]) == [("b", "MergeSlotGranted")]
    # a left the queue without merging (its CI failed): b carries a's change, so it is
    # built again on the base alone, and c behind it on b's new head later.
    sent_back = info("a", P.IMPLEMENTING)
    behind = queued("c", 2, P.CI, head=3, onto=2, ahead=("a", "b"))
    result = schedule({"app": factory()}, [sent_back, front, behind])
    assert result.observations == []
    assert result.builds == [Build("b", sha(2), sha(1), None, ())]


def test_a_held_failure_is_settled_at_the_front_and_rebuilt_when_its_ahead_left() -> None:
    held = queued("b", 1, P.CI, head=2, onto=1, ahead=("a",), held=True)
    assert kinds([info("a", P.MERGED), held]) == [("b", "QueueSettled")]
    assert kinds([queued("a", 0, P.CI, head=1, built=True), held]) == [], "a may be the cause"
    result = schedule({"app": factory()}, [info("a", P.IMPLEMENTING), held])
    assert result.builds == [Build("b", sha(2), sha(1), None, ())]


def test_those_behind_a_held_failure_are_built_without_it_at_once() -> None:
    queue = [
        queued("a", 0, P.CI, head=1, built=True),
        queued("r", 1, P.CI, head=2, onto=1, ahead=("a",), held=True),
        queued("c", 2, P.CI, head=3, onto=2, ahead=("a", "r")),
    ]
    result = schedule({"app": factory()}, queue)
    assert result.observations == [], "r waits: a may be the cause"
    assert result.builds == [Build("c", sha(3), sha(2), sha(1), ("a",))]
    # A failure of its own on top of a failing one is suspect: built again without it.
    queue[2] = queued("c", 2, P.CI, head=3, onto=2, ahead=("a", "r"), held=True)
    assert schedule({"app": factory()}, queue).builds == [Build("c", sha(3), sha(2), sha(1),
                                                                ("a",))]  # fmt: skip


BATCHED = {"app": factory(merge={"batchSize": 3, "speculationDepth": 2})}


def test_a_batch_is_built_waiting_for_its_last_task_whose_run_verifies_it() -> None:
    queue = [queued("a", 0, P.CI, head=1, built=True), queued("b", 1, head=2),
             queued("c", 2, head=3), queued("d", 3, head=4), queued("e", 4, head=5)]  # fmt: skip
    assert schedule(BATCHED, queue).builds == [Build("b", sha(2), None, sha(1), ("a",), True)]
    queue[1] = queued("b", 1, head=0x22, onto=1, ahead=("a",), covered=True)
    assert schedule(BATCHED, queue).builds == [Build("c", sha(3), None, sha(0x22), ("a", "b"),
                                                     True)]  # fmt: skip
    queue[2] = queued("c", 2, head=0x33, onto=0x22, ahead=("a", "b"), covered=True)
    assert schedule(BATCHED, queue).builds == [
        Build("d", sha(4), None, sha(0x33), ("a", "b", "c"), False)
    ], "d ends the batch"
    queue[3] = queued("d", 3, P.CI, head=0x44, onto=0x33, ahead=("a", "b", "c"))
    assert schedule(BATCHED, queue).builds == [], "two runs in flight: speculationDepth 2"
    queue.append(queued("f", 5, head=6))
    assert schedule(BATCHED, queue).builds == [
        Build("e", sha(5), None, sha(0x44), ("a", "b", "c", "d"), True)
    ], "the next batch is built while the runs go: it needs no run until it is full"
    queue[4] = queued("e", 4, head=0x55, onto=0x44, ahead=("a", "b", "c", "d"), covered=True)
    queue[0] = queued("a", 0, head=1, built=True, ci_passed=True)
    queue[3] = queued("d", 3, head=0x44, onto=0x33, ahead=("a", "b", "c"), ci_passed=True)
    result = schedule(BATCHED, queue)
    assert result.builds == [], "f would be a third run"
    assert [(n, o.kind) for n, o in result.observations] == [
        ("a", "MergeSlotGranted"),
        ("b", "QueueVerified"),
        ("c", "QueueVerified"),
    ], "e waits for f's run, which waits for a free one: e is not split"
    alone = schedule(BATCHED, [queue[0], queued("b", 1, head=2)])
    assert alone.builds == [Build("b", sha(2), None, sha(1), ("a",), False)], (
        "the last in the queue does not wait for a batch to fill"
    )
    checks = {"source": "github-checks", "requiredChecks": ["t"]}
    github = factory(merge={"batchSize": 3}, ci=checks,
                     repository={"url": "https://github.com/o/r.git", "forge": "github",
                                 "credentials": {"githubApp": {"secretName": "app"}}})  # fmt: skip
    built = schedule({"app": github}, [queue[0], queued("b", 1, head=2), queued("c", 2, head=3)])
    assert [b.covered for b in built.builds] == [False], (
        "the repository's CI runs on every head anyway: no batches"
    )


def test_a_green_run_verifies_the_batch_it_carried_and_the_front_merges_then() -> None:
    queue = [queued("b", 1, head=2, built=True, covered=True),
             queued("c", 2, head=3, onto=2, ahead=("b",), covered=True),
             queued("d", 3, P.CI, head=4, onto=3, ahead=("b", "c"))]  # fmt: skip
    assert schedule(BATCHED, queue).observations == [], "b waits for d's run"
    queue[2] = queued("d", 3, head=4, onto=3, ahead=("b", "c"), ci_passed=True)
    got = schedule(BATCHED, queue).observations
    assert [(n, o.kind, getattr(o, "by", None)) for n, o in got] == [
        ("b", "QueueVerified", "d"),
        ("c", "QueueVerified", "d"),
    ]
    queue[0] = queued("b", 1, head=2, built=True, covered=True, ci_passed=True)
    assert ("b", "MergeSlotGranted") in [(n, o.kind) for n, o in
                                         schedule(BATCHED, queue).observations]  # fmt: skip


def red_batch(size: int) -> list[TaskInfo]:
    """a (green, at the front), a batch c1..c<size> whose last run, h's, failed (held), and x
    behind h, to be built without it."""
    queue, names = [queued("a", 0, head=1, built=True, ci_passed=True)], ["a"]
    for i in range(1, size + 1):
        queue.append(queued(f"c{i}", i, head=i + 1, onto=i, ahead=tuple(names), covered=True))
        names.append(f"c{i}")
    queue.append(queued("h", size + 1, P.CI, head=size + 2, onto=size + 1, ahead=tuple(names),
                        held=True))  # fmt: skip
    queue.append(queued("x", size + 2, P.CI, head=size + 3, onto=size + 2, ahead=(*names, "h")))
    return queue


@pytest.mark.parametrize(("depth", "split"), [(1, ["c4"]), (3, ["c2", "c4", "c6"])])
def test_a_red_batch_is_bisected_with_the_runs_the_depth_allows(
    depth: int, split: list[str]
) -> None:
    shape = {"app": factory(merge={"batchSize": 8, "speculationDepth": depth})}
    queue = red_batch(7)
    result = schedule(shape, queue)
    assert [n for n, o in result.observations if o.kind == "BatchSplit"] == split, (
        "the batch and h's own change in depth + 1 parts: the end of each part runs CI"
    )
    assert all(getattr(o, "failed", "h") == "h" for _, o in result.observations)
    assert result.builds == [], "x would carry the red change: it waits for the bisection"
    queue[4] = queued("c4", 4, P.CI, head=5, onto=4, ahead=("a", "c1", "c2", "c3"))
    assert [n for n, o in schedule(shape, queue).observations if o.kind == "BatchSplit"] == [], (
        "c4's run decides first"
    )
    ahead_running = red_batch(7)
    ahead_running[0] = queued("a", 0, P.CI, head=1, built=True)
    assert kinds(ahead_running, merge={"batchSize": 8}) == [], "a's run may be the red one"


def test_a_batch_no_run_carries_any_more_is_verified_by_its_own_runs() -> None:
    # d, the batch's last, left the queue (cancelled): nothing behind b and c carries them.
    queue = [queued("b", 1, head=2, built=True, covered=True),
             queued("c", 2, head=3, onto=2, ahead=("b",), covered=True)]  # fmt: skip
    got = schedule(BATCHED, queue).observations
    assert [(n, o.kind, getattr(o, "failed", "-")) for n, o in got] == [
        ("c", "BatchSplit", None)
    ], "the last of them: its run verifies them all when green"


def test_a_task_that_conflicts_with_the_one_ahead_waits_for_it() -> None:
    conflicted = queued("b", 1, head=2)
    assert conflicted.queue is not None
    conflicted.queue.conflict = sha(1)
    result = schedule({"app": factory()}, [queued("a", 0, head=1, built=True), conflicted])
    assert result.builds == [] and [n for n, _ in result.observations] == ["a"]


def test_factories_merge_independently() -> None:
    tasks = [
        TaskInfo(name="a", factory="one", phase=P.MERGING, merge_running=True,
                 queue=QueuePlace(entered=T0)),
        TaskInfo(name="b", factory="two", phase=P.MERGING, queue=QueuePlace(entered=T0)),
    ]  # fmt: skip
    result = schedule({"one": factory(), "two": factory()}, tasks)
    assert [(n, o.kind) for n, o in result.observations] == [("b", "MergeSlotGranted")]


def test_tasks_of_an_unknown_factory_are_not_admitted() -> None:
    tasks = [TaskInfo(name="a", factory="ghost", phase=P.QUEUED)]
    assert schedule({}, tasks).observations == []


def test_a_task_awaiting_approval_keeps_its_slot() -> None:
    # Approval sends it straight to Merging, so the slot must still be its own.
    tasks = [
        info("waiting-for-alice", P.AWAITING_APPROVAL, scope=("a/**",)),
        info("next", P.QUEUED, scope=("b/**",)),
    ]
    assert kinds(tasks, concurrency={"maxActiveTasks": 1}) == []


def test_an_approved_parked_task_queues_behind_the_task_that_took_its_lock() -> None:
    # Found by hypothesis: approval used to jump a parked task straight back into CI
    # while another task held an overlapping scope.
    parked = Driver().to(P.IMPLEMENTING)
    parked.patch(patch(("src/db.py", ["DROP TABLE users"])))
    assert parked.phase == P.NEEDS_ATTENTION
    parked.human("approve")
    assert parked.phase == P.QUEUED
    tasks = [
        info("other", P.IMPLEMENTING, scope=("src/**",)),
        info("greet", parked.phase, scope=("src/**",)),
    ]
    assert kinds(tasks, concurrency={"maxActiveTasks": 5}) == []
