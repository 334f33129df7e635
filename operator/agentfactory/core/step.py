"""One decision in progress: a mutable copy of the task's status, the actions and
transitions collected, and the rules every handler of :mod:`agentfactory.core.pipeline`
shares: moving along an edge (with its history entry and conditions), entering a stage
within the retry caps and the budget, parking for a person, and the approval gate before a
merge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from agentfactory.core.actions import Action, CancelStage, Notify
from agentfactory.core.conditions import ConditionType, set_condition
from agentfactory.core.phases import ACTIVE, PHASE_OF_STAGE, Phase, Stage
from agentfactory.core.task import (
    MAX_HISTORY,
    AgentTaskSpec,
    AgentTaskStatus,
    HistoryEntry,
    QueuePlace,
    Usage,
)
from agentfactory.core.transitions import IllegalTransitionError, Trigger, check_edge
from agentfactory.core.work import Work, attempt_name, runs_as_attempt, work_for

if TYPE_CHECKING:
    from datetime import datetime

    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import Observation

P = Phase
T = Trigger
_V = TypeVar("_V")


@dataclass(frozen=True)
class TaskView:
    """What :func:`decide` knows about a task."""

    name: str
    spec: AgentTaskSpec
    status: AgentTaskStatus


@dataclass(frozen=True)
class Decision:
    """The outcome of one observation."""

    status: AgentTaskStatus
    """The whole new status (equal to the old one when nothing changed)."""
    actions: list[Action] = field(default_factory=list)
    """What to do, in order."""
    transitions: list[tuple[Phase, Trigger, Phase]] = field(default_factory=list)
    """The edges taken (usually one; entering a stage past its limits adds a second)."""
    ignored: str | None = None
    """Why the observation changed nothing, when it did not."""
    work: Work | None = None
    """The work the new status calls for (see :func:`agentfactory.core.work.work_for`)."""
    started: bool = False
    """Whether this decision started that work (a new attempt)."""


class Ignored(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Step:
    """One decision in progress: a mutable copy of the status plus collected actions."""

    def __init__(self, task: TaskView, factory: FactorySpecSpec, now: datetime) -> None:
        self.name = task.name
        self.spec = task.spec
        self.old = task.status
        self.status = task.status.model_copy(deep=True)
        self.factory = factory
        self.now = now
        self.actions: list[Action] = []
        self.started = False
        self.transitions: list[tuple[Phase, Trigger, Phase]] = []

    # -- entry point -------------------------------------------------------------------

    def run(self, observation: Observation) -> Decision:
        handler = getattr(self, f"_on_{observation.kind}")
        try:
            handler(observation)
        except Ignored as ignored:
            return Decision(status=self.old, ignored=ignored.why,
                            work=work_for(self.name, self.old, self.factory))  # fmt: skip
        work = work_for(self.name, self.status, self.factory)
        return Decision(status=self.status, actions=self.actions, transitions=self.transitions,
                        work=work, started=work is not None and self.started)  # fmt: skip

    # -- helpers -----------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.status.phase

    def _require(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise Ignored(f"not applicable in phase {self.phase}")

    def _require_attempt(self, stage: Stage, attempt: int) -> None:
        if PHASE_OF_STAGE[stage] != self.phase:
            raise Ignored(f"result of {stage} arrived in phase {self.phase}")
        if self.status.stage != stage or self.status.attempt != attempt:
            raise Ignored(
                f"stale result of {stage} attempt {attempt};"
                f" the current attempt is {self.status.attempt}"
            )

    def _pod(self) -> str | None:
        """The current attempt's pod, if the stage runs in one."""
        stage = self.status.stage
        if stage is None or self.status.attempt == 0 or not runs_as_attempt(stage, self.factory):
            return None
        return attempt_name(self.name, stage, self.status.attempt)

    def _cancel_live_stage(self) -> None:
        """Stop the current attempt's pod, if one is running."""
        pod, stage = self._pod(), self.status.stage
        if self.phase in ACTIVE and pod is not None and stage is not None:
            self.actions.append(CancelStage(stage, self.status.attempt, pod))

    def _move(self, trigger: Trigger, target: Phase, message: str = "") -> None:
        source = self.phase
        check_edge(source, trigger, target)
        self.transitions.append((source, trigger, target))
        entry = HistoryEntry.model_validate(
            {
                "time": self.now,
                "from": source,
                "to": target,
                "reason": trigger.value,
                "message": message[:1000],
                "pod": self._pod(),
            }
        )
        history = [*self.status.history, entry]
        dropped = max(0, len(history) - MAX_HISTORY)
        self.status.history = history[dropped:]
        self.status.history_dropped += dropped
        self.status.phase = target
        if target not in (P.MERGING, P.CI):  # out of the merge queue, if it was in it
            self.status.queue = None
        elif target == P.MERGING and self.status.queue is None:
            self.status.queue = QueuePlace(entered=self.now)
        self.status.reason = trigger.value
        self.status.message = message or None
        if source != target:
            self.status.last_transition_time = self.now
        self._set_conditions()

    def _set_conditions(self) -> None:
        phase, reason, message = self.phase, self.status.reason or "", self.status.message or ""
        progressing = phase in ACTIVE or phase in (P.PENDING, P.QUEUED)
        conds = set_condition(
            self.status.conditions,
            type=ConditionType.PROGRESSING,
            status="True" if progressing else "False",
            reason=reason,
            message=message,
            now=self.now,
        )
        waiting = phase in (P.AWAITING_APPROVAL, P.NEEDS_ATTENTION)
        conds = set_condition(
            conds,
            type=ConditionType.AWAITING_HUMAN,
            status="True" if waiting else "False",
            reason=reason,
            message=message if waiting else "",
            now=self.now,
        )
        succeeded = {P.MERGED: "True", P.FAILED: "False", P.CANCELLED: "False"}.get(
            phase, "Unknown"
        )
        self.status.conditions = set_condition(
            conds,
            type=ConditionType.SUCCEEDED,
            status=succeeded,  # type: ignore[arg-type]
            reason=reason,
            message=message if succeeded != "Unknown" else "",
            now=self.now,
        )

    def _spent(self, stage: Stage) -> int:
        """Attempts of *stage* in this round."""
        return self.status.attempts.of(stage) - self.status.round_baseline.of(stage)

    def _limit_problem(self, stage: Stage, *, caps: bool = True) -> tuple[Trigger, str] | None:
        """Why no new attempt of *stage* may start (the budget, or with *caps* the retry
        caps), or None."""
        problem = self._budget_problem()
        if problem is not None:
            return T.BUDGET_EXHAUSTED, f"budget exhausted: {problem}"
        if not caps:
            return None
        limits = self.factory.retries
        if self._spent(stage) >= 1 + limits.per_stage:
            return T.RETRIES_EXHAUSTED, (
                f"{stage} was attempted {self._spent(stage)} times (retries.perStage is"
                f" {limits.per_stage}); read the history and the last feedback, then fix the"
                " spec or the code and retry"
            )
        total = self.status.total_attempts - self.status.round_baseline_total
        if total >= limits.max_total_attempts:
            return T.RETRIES_EXHAUSTED, (
                f"{total} attempts in this round reached retries.maxTotalAttempts"
                f" {limits.max_total_attempts}; read the history, then fix the spec or the"
                " code and retry"
            )
        return None

    def _budget_problem(self) -> str | None:
        budget, usage = self.factory.budget, self.status.usage
        if usage.total_tokens >= budget.max_tokens_per_task:
            return (
                f"used {usage.total_tokens} tokens, budget.maxTokensPerTask is"
                f" {budget.max_tokens_per_task}; raise it in the FactorySpec and retry,"
                " or narrow the task"
            )
        if usage.cost_usd >= budget.max_cost_usd_per_task:
            return (
                f"spent ${usage.cost_usd:.2f}, budget.maxCostUSDPerTask is"
                f" ${budget.max_cost_usd_per_task:.2f}; raise it in the FactorySpec and retry,"
                " or narrow the task"
            )
        return None

    def _add_usage(self, usage: Usage) -> bool:
        """Count *usage*; park the task and return False when the budget is gone."""
        self.status.usage = self.status.usage + usage
        problem = self._budget_problem()
        if problem is None:
            return True
        self._cancel_live_stage()
        self._park(T.BUDGET_EXHAUSTED, f"budget exhausted: {problem}")
        return False

    def _park(self, trigger: Trigger, message: str) -> None:
        self._move(trigger, P.NEEDS_ATTENTION, message)
        self.actions.append(Notify(trigger.value, f"{self.name}: {message}"))

    def _enter(
        self, stage: Stage, trigger: Trigger, message: str, feedback: str | None,
        *, retry: bool = True,
    ) -> None:  # fmt: skip
        """Move to *stage*'s phase along *trigger*, spending an attempt (or park). An entry
        that is no *retry* (nothing failed) gets a new attempt number that the retry caps do
        not count; the budget still does."""
        target = PHASE_OF_STAGE[stage]
        limit = self._limit_problem(stage, caps=retry)
        if limit is not None:
            exhausted, problem = limit
            if self.phase in ACTIVE:
                # The last attempt's outcome and why no new attempt starts, in one entry.
                self._park(exhausted, f"{message}; {problem}" if message else problem)
            else:
                self._move(trigger, target, message)
                self._park(exhausted, problem)
            # A person's retry resumes at this stage, with these objections.
            self.status.feedback = feedback
            self.status.stage, self.status.attempt = stage, 0
            return
        self._move(trigger, target, message)
        self.status.feedback = feedback
        self.status.stage = stage
        if stage == Stage.MERGE:
            self.status.attempt = 0  # waits for the factory's merge slot
            return
        self._start_attempt(stage)
        if not retry:
            self._uncounted(stage)

    def _uncounted(self, stage: Stage) -> None:
        """Keep the latest attempt of *stage* out of the retry caps (nothing failed)."""
        self.status.round_baseline = self.status.round_baseline.bumped(stage)
        self.status.round_baseline_total += 1

    def _start_attempt(self, stage: Stage) -> None:
        self.status.attempts = self.status.attempts.bumped(stage)
        self.status.total_attempts += 1
        self.status.attempt = self.status.attempts.of(stage)
        self.started = True

    def _approval_needed(self) -> bool:
        record = self.status.escalation
        if record is None or record.revision != self.status.patch_revision:
            return True  # no escalation record for this patch: a bug upstream; stop safely
        if record.approved_by is not None:
            return False
        return bool(record.matches) or not self.factory.merge.auto

    def _after_review(self, trigger: Trigger, message: str) -> None:
        if self._approval_needed():
            record = self.status.escalation
            why = (
                f"escalation rules {', '.join(record.rules)} matched: {record.reason}"
                if record and record.matches
                else "merge.auto is false: every task waits for a person"
            )
            self._move(
                T.APPROVAL_REQUIRED,
                P.AWAITING_APPROVAL,
                f"{why}; {approve_hint(self.name)}",
            )
            self.status.attempt = 0
            self.actions.append(Notify(T.APPROVAL_REQUIRED.value, f"{self.name}: {why}"))
            return
        self._enter(Stage.MERGE, trigger, message, None)


def retry_hint(task: str) -> str:
    return (
        f"retry with: kubectl annotate agenttask {task}"
        " agentfactory.dev/retry=<your user name>"
        f" (locally: agentfactory local retry {task})"
    )


def approve_hint(task: str) -> str:
    return (
        f"approve with: kubectl annotate agenttask {task}"
        " agentfactory.dev/approved-by=<your user name>"
        f" (locally: agentfactory local approve {task})"
    )


def must(value: _V | None, what: str) -> _V:
    """*value*, which the pipeline's own invariants guarantee is set."""
    if value is None:
        raise IllegalTransitionError(f"{what} is missing: the status breaks an invariant")
    return value
