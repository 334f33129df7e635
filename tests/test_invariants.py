"""The pipeline's invariants under random observation sequences (hypothesis).

A small world model runs beside the core and checks it from the outside: which pods are
alive, which revisions a fresh code review approved, which heads CI saw green, which
revisions a person approved. After every observation:

- nothing is Merged without an APPROVE of the current revision by a code-review session,
  green CI on the exact merged head, and a person's approval of every escalated revision;
- retries are bounded per stage and in total, per round;
- a terminal phase is left only by a person's action;
- a task never has two live pods;
- an active task is within its budget;
- (several tasks) a factory never merges two tasks at once, never exceeds its slots, and
  never runs two tasks with overlapping scopes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testbed.builders import CLEAN, T0, factory, patch, sha, task_spec

from agentfactory.core.actions import CancelStage
from agentfactory.core.globs import scopes_overlap
from agentfactory.core.observations import (
    Admitted,
    CIFinished,
    DependenciesReady,
    DependencyCycle,
    HumanAction,
    MergeFinished,
    MergeSlotGranted,
    Observation,
    PatchProduced,
    PlanProduced,
    SpecInvalid,
    StageFailed,
    UsageReported,
    VerdictGiven,
)
from agentfactory.core.phases import ACTIVE, LOCKING, TERMINAL, Phase, Stage, Verdict
from agentfactory.core.pipeline import TaskView, decide
from agentfactory.core.scheduler import TaskInfo, schedule
from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus, PlanSummary, Usage
from agentfactory.core.work import AwaitChecks, Merge, RunAttempt, attempt_name

if TYPE_CHECKING:
    from agentfactory.core.factory import FactorySpecSpec

P = Phase
PATCHES = {
    "clean": CLEAN,
    "require": patch(("migrations/0001.sql", ["ALTER TABLE a ADD b int;"])),
    "park": patch(("src/db.py", ["DROP TABLE users"])),
    "protected": patch((".github/workflows/ci.yml", ["on: push"])),
}
ESCALATING = {"require", "park"}


@st.composite
def factories(draw: st.DrawFn) -> FactorySpecSpec:
    github = draw(st.booleans())
    overrides: dict[str, Any] = {
        "retries": {
            "perStage": draw(st.integers(0, 3)),
            "maxTotalAttempts": draw(st.integers(1, 15)),
        },
        "merge": {"auto": draw(st.booleans())},
        "budget": {"maxTokensPerTask": draw(st.sampled_from([300, 2000, 100_000]))},
        "escalation": {"approvers": draw(st.sampled_from([[], ["alice"]]))},
    }
    if github:
        overrides["repository"] = {"forge": "github", "credentials": {"token": {"secretName": "t"}}}
        overrides["ci"] = {"source": "github-checks", "requiredChecks": ["test"]}
    return factory(**overrides)


usage = st.builds(Usage, input_tokens=st.integers(0, 100), cost_usd=st.just(0.0))
#: What each phase usually hears next; the rest of the time anything may arrive.
EXPECTED = {
    P.PENDING: "ready", P.QUEUED: "admit", P.PLANNING: "plan", P.PLAN_REVIEW: "verdict",
    P.IMPLEMENTING: "patch", P.CI: "ci", P.CODE_REVIEW: "verdict", P.AWAITING_APPROVAL: "human",
    P.MERGING: "merge", P.NEEDS_ATTENTION: "human", P.FAILED: "human", P.CANCELLED: "human",
}  # fmt: skip
MILD = ["ready", "admit", "grant", "plan", "verdict", "patch", "ci", "merge", "fail", "usage",
        "human"]  # fmt: skip
HARSH = ["invalid", "cycle"]


def weighted(*pairs: tuple[str, int]) -> st.SearchStrategy[str]:
    return st.sampled_from([value for value, weight in pairs for _ in range(weight)])


@st.composite
def observations(draw: st.DrawFn, status: AgentTaskStatus, heads: int) -> tuple[Observation, str]:
    """An observation, usually aimed at the current attempt, sometimes stale or misplaced."""
    stage = status.stage or draw(st.sampled_from(list(Stage)))
    attempt = max(1, status.attempt)
    if draw(st.integers(0, 9)) == 0:
        attempt = max(1, attempt - 1)  # a stale result
    head = status.head_sha or sha(1)
    if draw(st.integers(0, 9)) == 0:
        head = sha(10_000 + heads)  # a head the core never saw
    roll = draw(st.integers(0, 99))
    if roll < 75 and status.phase in EXPECTED:
        kind = EXPECTED[status.phase]
        if kind == "merge" and status.attempt == 0:
            kind = "grant"
    else:
        kind = draw(st.sampled_from(MILD if roll < 98 else HARSH))
    tag = kind
    obs: Observation
    if kind == "ready":
        obs = DependenciesReady()
    elif kind == "admit":
        obs = Admitted()
    elif kind == "grant":
        obs = MergeSlotGranted()
    elif kind == "cycle":
        obs = DependencyCycle(cycle=["t", "u", "t"])
    elif kind == "plan":
        obs = PlanProduced(
            stage=Stage.PLAN, attempt=attempt, plan=PlanSummary(summary="p"), usage=draw(usage)
        )
    elif kind == "verdict":
        review = draw(st.sampled_from([Stage.PLAN_REVIEW, Stage.CODE_REVIEW, stage]))
        verdict = draw(weighted((Verdict.APPROVE, 3), (Verdict.REQUEST_CHANGES, 1)))
        obs = VerdictGiven(
            stage=review, attempt=attempt, verdict=Verdict(verdict), usage=draw(usage)
        )
    elif kind == "patch":
        tag = draw(weighted(("clean", 5), ("require", 2), ("park", 1), ("protected", 2)))
        obs = PatchProduced(
            stage=Stage.IMPLEMENT, attempt=attempt, patch=PATCHES[tag], head_sha=sha(heads + 1),
            usage=draw(usage),
        )  # fmt: skip
    elif kind == "ci":
        obs = CIFinished(
            head_sha=head,
            state=draw(weighted(("success", 6), ("failure", 3), ("timeout", 1))),  # type: ignore[arg-type]
            attempt=None if status.stage != Stage.CI else attempt,
        )
    elif kind == "merge":
        outcome = draw(weighted(("merged", 6), ("conflict", 1), ("base-moved", 2), ("error", 1)))
        obs = MergeFinished(
            attempt=attempt,
            outcome=outcome,  # type: ignore[arg-type]
            head_sha=head,
            merged_sha=sha(99_999) if outcome == "merged" else None,
            new_head_sha=sha(20_000 + heads) if outcome == "base-moved" else None,
        )
    elif kind == "fail":
        reason = draw(st.sampled_from(["evicted", "oom-killed", "timeout", "malformed-result"]))
        obs = StageFailed(stage=stage, attempt=attempt, reason=reason)
    elif kind == "usage":
        obs = UsageReported(usage=draw(usage))
    elif kind == "human":
        obs = HumanAction(
            action=draw(weighted(("approve", 6), ("retry", 3), ("cancel", 1))),  # type: ignore[arg-type]
            by=draw(weighted(("alice", 4), ("mallory", 1))),
        )
    else:
        obs = SpecInvalid(message="spec changed")
    return obs, tag


@dataclass
class World:
    """What really happened, tracked independently of the core's status."""

    factory: FactorySpecSpec
    name: str = "t"
    spec: AgentTaskSpec = field(default_factory=task_spec)
    status: AgentTaskStatus = field(default_factory=AgentTaskStatus)
    live: set[str] = field(default_factory=set)
    approved_reviews: set[int] = field(default_factory=set)
    green_heads: set[str] = field(default_factory=set)
    human_approved: set[int] = field(default_factory=set)
    escalated: set[int] = field(default_factory=set)
    starts: dict[Stage, int] = field(default_factory=dict)
    free: dict[Stage, int] = field(default_factory=dict)
    """Starts that were no retries (a re-verification after the base moved)."""
    heads: int = 0
    steps: int = 0

    def apply(self, obs: Observation, tag: str) -> None:
        before = self.status
        self.steps += 1
        # A result comes from its pod, which has ended by the time the result is read.
        stage = getattr(obs, "stage", None) or (Stage.CI if isinstance(obs, CIFinished) else None)
        attempt = getattr(obs, "attempt", None)
        if stage is not None and attempt is not None:
            self.live.discard(attempt_name(self.name, stage, attempt))
        decision = decide(
            TaskView(self.name, self.spec, before),
            self.factory,
            obs,
            now=T0.replace(second=self.steps % 60, minute=self.steps // 60 % 60),
        )
        after = decision.status
        self.status = after
        if decision.ignored:
            assert after == before
            return
        if isinstance(obs, PatchProduced):
            self.heads += 1
        if after.head_sha != before.head_sha:
            self.green_heads.clear()
        if after.patch_revision != before.patch_revision and tag in ESCALATING:
            self.escalated.add(after.patch_revision)
        if isinstance(obs, CIFinished) and obs.state == "success":
            self.green_heads.add(obs.head_sha)
        if (
            isinstance(obs, VerdictGiven)
            and obs.stage == Stage.CODE_REVIEW
            and obs.verdict == Verdict.APPROVE
        ):
            self.approved_reviews.add(before.patch_revision)
        if isinstance(obs, HumanAction) and obs.action == "approve":
            self.human_approved.add(after.patch_revision)
        if isinstance(obs, HumanAction) and obs.action == "retry":
            self.starts.clear()
            self.free.clear()
        # A base that moved is nobody's failure: that merge attempt and the CI run it calls
        # for are not retries, and the retry caps do not count them.
        rebased = isinstance(obs, MergeFinished) and obs.outcome == "base-moved"
        if rebased and after.phase == P.CI:
            for stage in (Stage.MERGE, Stage.CI):
                self.free[stage] = self.free.get(stage, 0) + 1
        if before.phase in TERMINAL and after.phase != before.phase:
            assert isinstance(obs, HumanAction), f"{obs.kind} moved a task out of {before.phase}"
        for action in decision.actions:
            if isinstance(action, CancelStage):
                self.live.discard(action.pod)
        work = decision.work if decision.started else None
        if isinstance(work, RunAttempt):
            assert not self.live, f"launching {work.name} while {self.live} is alive"
            self.live.add(work.name)
        if work is not None:
            stage_started = {RunAttempt: getattr(work, "stage", None), AwaitChecks: Stage.CI,
                             Merge: Stage.MERGE}[type(work)]  # fmt: skip
            assert stage_started is not None
            self.starts[stage_started] = self.starts.get(stage_started, 0) + 1
        self.check()

    def check(self) -> None:
        status, limits = self.status, self.factory.retries
        for stage, count in self.starts.items():
            counted = count - self.free.get(stage, 0)
            assert counted <= 1 + limits.per_stage, f"{stage} started {counted} times in a round"
        free = sum(self.free.values())
        assert sum(self.starts.values()) - free <= limits.max_total_attempts
        if status.phase in ACTIVE:
            assert status.usage.total_tokens < self.factory.budget.max_tokens_per_task
        if status.phase == P.MERGED:
            revision = status.patch_revision
            assert revision in self.approved_reviews, "merged without a fresh APPROVE"
            assert status.head_sha in self.green_heads, "merged a head CI did not pass"
            if revision in self.escalated or not self.factory.merge.auto:
                assert revision in self.human_approved, "merged an escalation nobody approved"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(factories(), st.data())
def test_random_observations_never_break_the_invariants(
    spec: FactorySpecSpec, data: st.DataObject
) -> None:
    world = World(factory=spec)
    for _ in range(data.draw(st.integers(10, 80))):
        obs, tag = data.draw(observations(world.status, world.heads))
        world.apply(obs, tag)


@settings(max_examples=200, deadline=None)
@given(factories(), st.data())
def test_runs_until_merged_keep_the_invariants(spec: FactorySpecSpec, data: st.DataObject) -> None:
    """Long runs that stop only at Merged, so the merge invariants are exercised often."""
    world = World(factory=spec)
    for _ in range(150):
        if world.status.phase == P.MERGED:
            break
        obs, tag = data.draw(observations(world.status, world.heads))
        world.apply(obs, tag)


@st.composite
def task_sets(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    scopes = [["src/**"], ["src/api/**"], ["docs/**"], ["tests/test_a.py"], ["tests/**"]]
    n = draw(st.integers(2, 4))
    return [(f"t{i}", draw(st.sampled_from(scopes))) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(task_sets(), st.integers(1, 3), st.data())
def test_many_tasks_one_factory_never_merge_together_or_share_paths(
    tasks: list[tuple[str, list[str]]], slots: int, data: st.DataObject
) -> None:
    spec = factory(concurrency={"maxActiveTasks": slots}, merge={"auto": True})
    worlds = {
        name: World(factory=spec, name=name, spec=task_spec(scope={"paths": scope}))
        for name, scope in tasks
    }
    for _ in range(120):
        infos = [
            TaskInfo(
                name=w.name,
                factory="app",
                phase=w.status.phase,
                scope=tuple(w.spec.scope.paths),
                merge_running=w.status.phase == P.MERGING and w.status.attempt > 0,
                phase_since=w.status.last_transition_time,
            )
            for w in worlds.values()
        ]
        for name, obs in schedule({"app": spec}, infos).observations:
            worlds[name].apply(obs, obs.kind)
        world = worlds[data.draw(st.sampled_from(sorted(worlds)))]
        obs, tag = data.draw(observations(world.status, world.heads))
        if isinstance(obs, (MergeSlotGranted, Admitted, DependenciesReady)):
            continue  # only the scheduler grants these here
        world.apply(obs, tag)

        merging = [
            w.name for w in worlds.values() if w.status.phase == P.MERGING and w.status.attempt > 0
        ]
        assert len(merging) <= 1, f"merging at once: {merging}"
        holding = [w for w in worlds.values() if w.status.phase in LOCKING]
        assert len(holding) <= slots, f"{len(holding)} tasks hold slots, only {slots} exist"
        locking = [w for w in worlds.values() if w.status.phase in LOCKING]
        for i, first in enumerate(locking):
            for second in locking[i + 1 :]:
                assert not scopes_overlap(first.spec.scope.paths, second.spec.scope.paths), (
                    f"{first.name} and {second.name} hold overlapping scopes"
                )
