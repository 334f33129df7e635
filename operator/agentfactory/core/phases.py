"""Phases of an AgentTask and the stages that run inside them.

::

    Pending -> Queued -> Planning -> PlanReview -> Implementing -> CI -> CodeReview
        -> [AwaitingApproval] -> Merging -> Merged
    terminal: Merged, NeedsAttention (a person acts), Failed, Cancelled

The transitions themselves live in :mod:`agentfactory.core.transitions`.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a task is in the pipeline."""

    PENDING = "Pending"
    QUEUED = "Queued"
    PLANNING = "Planning"
    PLAN_REVIEW = "PlanReview"
    IMPLEMENTING = "Implementing"
    CI = "CI"
    CODE_REVIEW = "CodeReview"
    AWAITING_APPROVAL = "AwaitingApproval"
    MERGING = "Merging"
    MERGED = "Merged"
    NEEDS_ATTENTION = "NeedsAttention"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Stage(StrEnum):
    """A unit of work in one phase: an agent session, a CI run, or the merge."""

    PLAN = "plan"
    PLAN_REVIEW = "planReview"
    IMPLEMENT = "implement"
    CI = "ci"
    CODE_REVIEW = "codeReview"
    MERGE = "merge"

    @property
    def slug(self) -> str:
        """The stage in pod and label form: lowercase with dashes (`plan-review`)."""
        return {"planReview": "plan-review", "codeReview": "code-review"}.get(
            self.value, self.value
        )


class Verdict(StrEnum):
    """A reviewer's decision."""

    APPROVE = "APPROVE"
    REQUEST_CHANGES = "REQUEST_CHANGES"


STAGE_OF_PHASE: dict[Phase, Stage] = {
    Phase.PLANNING: Stage.PLAN,
    Phase.PLAN_REVIEW: Stage.PLAN_REVIEW,
    Phase.IMPLEMENTING: Stage.IMPLEMENT,
    Phase.CI: Stage.CI,
    Phase.CODE_REVIEW: Stage.CODE_REVIEW,
    Phase.MERGING: Stage.MERGE,
}
PHASE_OF_STAGE: dict[Stage, Phase] = {stage: phase for phase, stage in STAGE_OF_PHASE.items()}

#: Phases no observation leaves without a person acting.
TERMINAL: frozenset[Phase] = frozenset(
    {Phase.MERGED, Phase.NEEDS_ATTENTION, Phase.FAILED, Phase.CANCELLED}
)
#: Phases in which a stage (an agent, CI or the merge) may be under way.
ACTIVE: frozenset[Phase] = frozenset(STAGE_OF_PHASE)
#: Phases in which a task holds a concurrency slot and its path lock: from admission until
#: it leaves the pipeline, including while it waits for a person's approval (its branch
#: already changes the paths in its scope, and approval sends it straight to Merging).
#: NeedsAttention releases both; leaving it always goes back through admission.
LOCKING: frozenset[Phase] = ACTIVE | {Phase.AWAITING_APPROVAL}
#: Phases a person's retry applies to.
RETRYABLE: frozenset[Phase] = frozenset({Phase.NEEDS_ATTENTION, Phase.FAILED, Phase.CANCELLED})
