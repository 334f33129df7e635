"""The pipeline's transition table: every phase change the core may make, in one place.

::

    Pending --DependenciesReady--> Queued --Admitted--> Planning --PlanProduced--> PlanReview
    PlanReview --PlanApproved--> Implementing      PlanReview --PlanRejected--> Planning
    Implementing --PatchAccepted--> CI             Implementing --PatchRejected--> Implementing
    Implementing --EscalationParked--> NeedsAttention
    CI --CIPassed--> CodeReview                    CI --CIFailed--> Implementing
    CI --CIPassedReviewed--> Merging (re-verified after the base moved)
    CodeReview --ReviewApproved--> Merging         CodeReview --ReviewRejected--> Implementing
    CodeReview --ApprovalRequired--> AwaitingApproval --HumanApproved--> Merging
    NeedsAttention --HumanApproved--> Queued (a parked escalation, resumed at CI once admitted)
    Merging --MergeStarted--> Merging --Merged--> Merged
    Merging --MergeConflict--> Implementing        Merging --BaseMoved--> CI
    Merging|CI --QueueRebased--> CI (built on the merge queue ahead)   CI --CIHeld--> CI
    CI --MergeConflict--> Implementing (a queued change that no longer applies on the base)
    any active --RetriesExhausted|BudgetExhausted--> NeedsAttention
    NeedsAttention|Failed|Cancelled --HumanRetried--> Pending
    any open --HumanCancelled--> Cancelled         any open --SpecInvalid--> Failed

:func:`agentfactory.core.pipeline.decide` only moves along edges listed here; a move not in
the table is a programming error and raises.
"""

from __future__ import annotations

from enum import StrEnum

from agentfactory.core.phases import ACTIVE, TERMINAL, Phase

P = Phase


class Trigger(StrEnum):
    """Why a task moved; also the `reason` of the history entry and the Event."""

    DEPENDENCIES_READY = "DependenciesReady"
    DEPENDENCY_CYCLE = "DependencyCycle"
    ADMITTED = "Admitted"
    RESUMED = "Resumed"
    PLAN_PRODUCED = "PlanProduced"
    QUESTIONS_OPEN = "QuestionsOpen"
    PLAN_APPROVED = "PlanApproved"
    PLAN_REJECTED = "PlanRejected"
    PATCH_ACCEPTED = "PatchAccepted"
    PATCH_REJECTED = "PatchRejected"
    ESCALATION_PARKED = "EscalationParked"
    CI_PASSED = "CIPassed"
    CI_PASSED_REVIEWED = "CIPassedReviewed"
    CI_FAILED = "CIFailed"
    CI_TIMED_OUT = "CITimedOut"
    REVIEW_APPROVED = "ReviewApproved"
    REVIEW_REJECTED = "ReviewRejected"
    APPROVAL_REQUIRED = "ApprovalRequired"
    HUMAN_APPROVED = "HumanApproved"
    HUMAN_CHANGES_REQUESTED = "HumanChangesRequested"
    MERGE_STARTED = "MergeStarted"
    MERGED = "Merged"
    MERGE_CONFLICT = "MergeConflict"
    QUEUE_REBASED = "QueueRebased"
    CI_HELD = "CIHeld"
    BATCH_SPLIT = "BatchSplit"
    BASE_MOVED = "BaseMoved"
    MERGE_UNVERIFIED = "MergeUnverified"
    MERGE_BLOCKED = "MergeBlocked"
    SETUP_FAILED = "SetupFailed"
    STAGE_RETRIED = "StageRetried"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    HUMAN_RETRIED = "HumanRetried"
    HUMAN_CANCELLED = "HumanCancelled"
    SPEC_INVALID = "SpecInvalid"


T = Trigger
_OPEN = frozenset(Phase) - TERMINAL
_STAGE_PHASES = (P.PLANNING, P.PLAN_REVIEW, P.IMPLEMENTING, P.CI, P.CODE_REVIEW, P.MERGING)

_ROWS: list[tuple[frozenset[Phase] | Phase, Trigger, Phase]] = [
    (P.PENDING, T.DEPENDENCIES_READY, P.QUEUED),
    (P.PENDING, T.DEPENDENCY_CYCLE, P.FAILED),
    (P.QUEUED, T.ADMITTED, P.PLANNING),
    *[(P.QUEUED, T.RESUMED, phase) for phase in _STAGE_PHASES],
    (P.PLANNING, T.PLAN_PRODUCED, P.PLAN_REVIEW),
    (P.PLANNING, T.QUESTIONS_OPEN, P.AWAITING_APPROVAL),
    (P.AWAITING_APPROVAL, T.HUMAN_APPROVED, P.PLAN_REVIEW),
    (P.PLAN_REVIEW, T.PLAN_APPROVED, P.IMPLEMENTING),
    (P.PLAN_REVIEW, T.PLAN_REJECTED, P.PLANNING),
    (P.IMPLEMENTING, T.PATCH_ACCEPTED, P.CI),
    (P.IMPLEMENTING, T.PATCH_REJECTED, P.IMPLEMENTING),
    (P.IMPLEMENTING, T.ESCALATION_PARKED, P.NEEDS_ATTENTION),
    (P.CI, T.CI_PASSED, P.CODE_REVIEW),
    (P.CI, T.CI_PASSED_REVIEWED, P.MERGING),
    (P.CI, T.APPROVAL_REQUIRED, P.AWAITING_APPROVAL),
    (P.CI, T.CI_FAILED, P.IMPLEMENTING),
    (P.CI, T.CI_TIMED_OUT, P.NEEDS_ATTENTION),
    (P.CODE_REVIEW, T.REVIEW_APPROVED, P.MERGING),
    (P.CODE_REVIEW, T.APPROVAL_REQUIRED, P.AWAITING_APPROVAL),
    (P.CODE_REVIEW, T.REVIEW_REJECTED, P.IMPLEMENTING),
    (P.AWAITING_APPROVAL, T.HUMAN_APPROVED, P.MERGING),
    (P.NEEDS_ATTENTION, T.HUMAN_APPROVED, P.QUEUED),
    *[
        (phase, T.HUMAN_CHANGES_REQUESTED, P.IMPLEMENTING)
        for phase in (P.CI, P.CODE_REVIEW, P.AWAITING_APPROVAL)
    ],
    (P.MERGING, T.MERGE_STARTED, P.MERGING),
    (P.MERGING, T.MERGED, P.MERGED),
    (P.MERGING, T.MERGE_CONFLICT, P.IMPLEMENTING),
    (P.MERGING, T.BASE_MOVED, P.CI),
    (P.MERGING, T.QUEUE_REBASED, P.CI),
    (P.CI, T.QUEUE_REBASED, P.CI),
    (P.CI, T.QUEUE_REBASED, P.MERGING),
    (P.MERGING, T.QUEUE_REBASED, P.MERGING),
    (P.MERGING, T.BATCH_SPLIT, P.CI),
    (P.CI, T.CI_HELD, P.CI),
    (P.CI, T.MERGE_CONFLICT, P.IMPLEMENTING),
    (P.MERGING, T.MERGE_UNVERIFIED, P.NEEDS_ATTENTION),
    (P.MERGING, T.MERGE_BLOCKED, P.NEEDS_ATTENTION),
    *[(phase, T.STAGE_RETRIED, phase) for phase in _STAGE_PHASES],
    (ACTIVE, T.RETRIES_EXHAUSTED, P.NEEDS_ATTENTION),
    (ACTIVE, T.BUDGET_EXHAUSTED, P.NEEDS_ATTENTION),
    (ACTIVE - {P.MERGING}, T.SETUP_FAILED, P.NEEDS_ATTENTION),  # the stages that run pods
    (frozenset({P.NEEDS_ATTENTION, P.FAILED, P.CANCELLED}), T.HUMAN_RETRIED, P.PENDING),
    (_OPEN | {P.NEEDS_ATTENTION, P.FAILED}, T.HUMAN_CANCELLED, P.CANCELLED),
    (_OPEN, T.SPEC_INVALID, P.FAILED),
]


def _expand() -> frozenset[tuple[Phase, Trigger, Phase]]:
    edges: set[tuple[Phase, Trigger, Phase]] = set()
    for source, trigger, target in _ROWS:
        for phase in [source] if isinstance(source, Phase) else sorted(source):
            edges.add((phase, trigger, target))
    return frozenset(edges)


#: Every allowed (from, trigger, to) edge.
TRANSITIONS: frozenset[tuple[Phase, Trigger, Phase]] = _expand()


class IllegalTransitionError(AssertionError):
    """The core tried to move along an edge the table does not list (a bug)."""


def check_edge(source: Phase, trigger: Trigger, target: Phase) -> None:
    """Raise :class:`IllegalTransitionError` unless the table lists the edge."""
    if (source, trigger, target) not in TRANSITIONS:
        raise IllegalTransitionError(f"{source} --{trigger}--> {target} is not in the table")
