"""Test builders: factories, tasks, patches, and a Driver that feeds observations to the core.

Explicit helpers rather than autouse fixtures: each test says what it builds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentfactory.core.diff import ChangedLine, FileChange, Patch
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.observations import (
    Admitted,
    BatchSplit,
    CIFinished,
    DependenciesReady,
    HumanAction,
    MergeFinished,
    MergeSlotGranted,
    Observation,
    PatchProduced,
    PlanProduced,
    QueueConflict,
    QueueRebased,
    QueueVerified,
    StageFailed,
    VerdictGiven,
)
from agentfactory.core.phases import Phase, Stage, Verdict
from agentfactory.core.pipeline import Decision, TaskView, decide
from agentfactory.core.task import (
    AgentTaskSpec,
    AgentTaskStatus,
    FailedCheck,
    PlanSummary,
    Proof,
)
from agentfactory.core.work import RunAttempt, Work

if TYPE_CHECKING:
    from agentfactory.core.actions import Action

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge *overrides* into a copy of *base*."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


FACTORY: dict[str, Any] = {
    "repository": {"url": "/srv/git/app.git", "forge": "git"},
    "checks": [{"name": "test", "command": "pytest -q"}],
    "retries": {"perStage": 2, "maxTotalAttempts": 20},
    "escalation": {
        "rules": [
            {"name": "migrations", "paths": ["migrations/**"], "action": "RequireApproval"},
            {"name": "drop-table", "contentPatterns": [r"(?i)drop\s+table"], "action": "Park"},
        ]
    },
}
TASK: dict[str, Any] = {
    "factoryRef": "app",
    "goal": "Greets the user by name.",
    "acceptanceCriteria": ["greet('Ada') returns 'Hello, Ada'"],
    "scope": {"paths": ["src/**", "tests/**", "migrations/**"]},
}


def factory(**overrides: Any) -> FactorySpecSpec:
    return FactorySpecSpec.model_validate(merge(FACTORY, overrides))


def task_spec(**overrides: Any) -> AgentTaskSpec:
    return AgentTaskSpec.model_validate(merge(TASK, overrides))


def sha(n: int) -> str:
    return f"{n:040x}"


def patch(*files: tuple[str, list[str]] | tuple[str, list[str], list[str]]) -> Patch:
    """A patch from (path, added lines[, removed lines]) tuples."""
    changes = []
    for entry in files:
        path, added = entry[0], entry[1]
        removed = entry[2] if len(entry) > 2 else []  # type: ignore[misc]
        changes.append(
            FileChange(
                path=path,
                added=[ChangedLine(number=i + 1, text=t) for i, t in enumerate(added)],
                removed=[ChangedLine(number=i + 1, text=t) for i, t in enumerate(removed)],
            )
        )
    return Patch(files=changes)


CLEAN = patch(("src/greet.py", ["def greet(name):", "    return f'Hello, {name}'"]))


@dataclass
class Driver:
    """A task under test: feeds observations and keeps the resulting status."""

    factory: FactorySpecSpec = field(default_factory=factory)
    spec: AgentTaskSpec = field(default_factory=task_spec)
    name: str = "greet"
    status: AgentTaskStatus = field(default_factory=AgentTaskStatus)
    clock: datetime = T0
    actions: list[Action] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    heads: int = 0

    def feed(self, observation: Observation) -> Decision:
        self.clock += timedelta(seconds=1)
        decision = decide(
            TaskView(self.name, self.spec, self.status), self.factory, observation, now=self.clock
        )
        self.status = decision.status
        self.actions += decision.actions
        self.decisions.append(decision)
        return decision

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @property
    def attempt(self) -> int:
        return self.status.attempt

    # One helper per observation, aimed at the current attempt.

    def ready(self) -> Decision:
        return self.feed(DependenciesReady())

    def admit(self) -> Decision:
        return self.feed(Admitted())

    def plan(self, *questions: str) -> Decision:
        plan = PlanSummary(summary="p", open_questions=list(questions))
        return self.feed(PlanProduced(stage=Stage.PLAN, attempt=self.attempt, plan=plan))

    def verdict(self, verdict: Verdict = Verdict.APPROVE, stage: Stage | None = None) -> Decision:
        stage = stage or self.status.stage or Stage.PLAN_REVIEW
        return self.feed(VerdictGiven(stage=stage, attempt=self.attempt, verdict=verdict))

    def patch(self, change: Patch = CLEAN, **kwargs: Any) -> Decision:
        self.heads += 1
        return self.feed(
            PatchProduced(
                stage=Stage.IMPLEMENT,
                attempt=self.attempt,
                patch=change,
                head_sha=sha(self.heads),
                **kwargs,
            )
        )

    def ci(
        self, state: str = "success", failed: list[str] | None = None, proof: Proof | None = None
    ) -> Decision:
        head = self.status.head_sha or sha(0)
        return self.feed(
            CIFinished(
                head_sha=head,
                state=state,  # type: ignore[arg-type]
                failed_checks=[FailedCheck(name=n, summary="boom") for n in failed or []],
                proof=proof,
            )
        )

    def rebuilt(
        self, head: int = 0x51, onto: int | None = 0x50, ahead: tuple[str, ...] = ("first",),
        *, covered: bool = False,
    ) -> Decision:  # fmt: skip
        """The merge queue built the task's change on *onto* (None: the base); *covered*: the
        run of the last task of its batch verifies it."""
        return self.feed(QueueRebased(
            from_sha=self.status.head_sha or sha(0), head_sha=sha(head),
            onto=sha(onto) if onto is not None else None, ahead=list(ahead),
            covered=covered))  # fmt: skip

    def verified(self, by: str = "last") -> Decision:
        """The last task of its batch passed CI carrying this task's head."""
        return self.feed(QueueVerified(head_sha=self.status.head_sha or sha(0), by=by))

    def split(self, failed: str | None = "last") -> Decision:
        """Its batch failed CI: its head is verified on its own run."""
        return self.feed(BatchSplit(head_sha=self.status.head_sha or sha(0), failed=failed))

    def conflict(self, onto: int | None = None, ahead: tuple[str, ...] = ()) -> Decision:
        return self.feed(QueueConflict(
            from_sha=self.status.head_sha or sha(0), onto=sha(onto) if onto is not None else None,
            ahead=list(ahead), message="app.py"))  # fmt: skip

    def grant(self) -> Decision:
        return self.feed(MergeSlotGranted())

    def merged(self, **kwargs: Any) -> Decision:
        fields: dict[str, Any] = {
            "attempt": self.attempt,
            "outcome": "merged",
            "head_sha": self.status.head_sha,
            "merged_sha": sha(0xBEEF),
        }
        return self.feed(MergeFinished(**{**fields, **kwargs}))

    def fail(self, reason: str = "evicted") -> Decision:
        stage = self.status.stage or Stage.PLAN
        return self.feed(StageFailed(stage=stage, attempt=self.attempt, reason=reason))  # type: ignore[arg-type]

    def human(self, action: str, by: str = "alice", feedback: str = "") -> Decision:
        return self.feed(HumanAction(action=action, by=by, feedback=feedback))  # type: ignore[arg-type]

    def started(self) -> list[Work]:
        """The work each decision started, in order."""
        return [d.work for d in self.decisions if d.started and d.work is not None]

    def launched(self) -> list[RunAttempt]:
        return [w for w in self.started() if isinstance(w, RunAttempt)]

    def to(self, phase: Phase) -> Driver:
        """Drive along the happy path until *phase*; returns self for chaining."""
        steps = {
            Phase.QUEUED: self.ready,
            Phase.PLANNING: self.admit,
            Phase.PLAN_REVIEW: self.plan,
            Phase.IMPLEMENTING: self.verdict,
            Phase.CI: self.patch,
            Phase.CODE_REVIEW: self.ci,
            Phase.MERGING: lambda: self.verdict(Verdict.APPROVE, Stage.CODE_REVIEW),
            Phase.MERGED: self.merged,
        }
        order = list(steps)
        while self.phase != phase:
            if self.phase == Phase.MERGING and self.attempt == 0:
                self.grant()
                continue
            following = order[order.index(self.phase) + 1] if self.phase in order else Phase.QUEUED
            before = self.phase
            steps[following]()
            assert self.phase != before or self.phase == Phase.MERGING, (
                f"stuck in {self.phase}: {self.decisions[-1]}"
            )
            if self.phase in (Phase.NEEDS_ATTENTION, Phase.FAILED, Phase.AWAITING_APPROVAL):
                assert phase == self.phase, f"went to {self.phase}: {self.status.message}"
        return self
