"""Observations: the one thing that happened, fed to :func:`agentfactory.core.pipeline.decide`.

Adapters (the kopf handlers, the local runner) turn pod results, forge events, scheduler
grants and human annotations into these. Results of a stage carry the stage and attempt
they belong to, so a late or duplicated result is recognised and ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agentfactory.core.base import Model
from agentfactory.core.common import SHA_PATTERN
from agentfactory.core.diff import Patch
from agentfactory.core.phases import Stage, Verdict
from agentfactory.core.task import (
    FailedCheck,
    Finding,
    ImplementationNote,
    PlanSummary,
    Proof,
    Usage,
)

FailureReason = Literal[
    "evicted", "oom-killed", "unschedulable", "error", "malformed-result", "timeout", "setup"
]
"""Why a stage attempt ended without a usable result; `setup`: the factory's set-up (a key the
model API refuses, an image that cannot be pulled), which no retry of the stage mends."""


class _StageResult(Model):
    stage: Stage
    """The stage the result belongs to."""
    attempt: int = Field(ge=1)
    """The attempt the result belongs to."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and cost the attempt spent."""


class DependenciesReady(Model):
    """Every task in `dependsOn` is Merged (the scheduler saw it)."""

    kind: Literal["DependenciesReady"] = "DependenciesReady"


class DependencyCycle(Model):
    """The task is part of a dependency cycle."""

    kind: Literal["DependencyCycle"] = "DependencyCycle"
    cycle: list[str]
    """The cycle, first task repeated at the end (`a -> b -> a`)."""


class Admitted(Model):
    """The scheduler granted a slot and the path lock."""

    kind: Literal["Admitted"] = "Admitted"


class MergeSlotGranted(Model):
    """The scheduler made this task the factory's one merging task."""

    kind: Literal["MergeSlotGranted"] = "MergeSlotGranted"


class QueueRebased(Model):
    """The task's change was built on the one ahead of it in the merge queue (or on the
    base), so that CI verifies it with every change that merges before it."""

    kind: Literal["QueueRebased"] = "QueueRebased"
    from_sha: str = Field(pattern=SHA_PATTERN)
    """The head it was built from (a stale rebuild is recognised)."""
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The new head."""
    onto: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The head ahead it was built on (None: the base)."""
    ahead: list[str] = Field(default_factory=list)
    """The queued tasks whose changes the new head carries."""
    covered: bool = False
    """Verified by the CI run of the last task of its batch, not by a run of its own."""


class QueueVerified(Model):
    """The last task of the batch behind it passed CI with this task's head in it: this head
    is verified (`merge.batchSize`)."""

    kind: Literal["QueueVerified"] = "QueueVerified"
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The task's head the run carried."""
    by: str
    """The task whose CI run it was."""


class BatchSplit(Model):
    """The batch carrying this task failed CI: its head is verified on its own run next, to
    find which change of the batch failed (bisection)."""

    kind: Literal["BatchSplit"] = "BatchSplit"
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The head to verify."""
    failed: str | None = None
    """The task whose run failed (None: no task behind it carries it any more)."""


class QueueConflict(Model):
    """The task's change does not apply on the head ahead of it (or on the base)."""

    kind: Literal["QueueConflict"] = "QueueConflict"
    from_sha: str = Field(pattern=SHA_PATTERN)
    onto: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The head it was to be built on (None: the base, a conflict of its own)."""
    ahead: list[str] = Field(default_factory=list)
    message: str = ""
    """Which files conflict."""


class QueueSettled(Model):
    """Every task ahead of a task whose CI failed in the queue has merged: the failure is
    its own."""

    kind: Literal["QueueSettled"] = "QueueSettled"


class PlanProduced(_StageResult):
    """The planner finished."""

    kind: Literal["PlanProduced"] = "PlanProduced"
    plan: PlanSummary


class VerdictGiven(_StageResult):
    """A reviewer (plan or code) finished."""

    kind: Literal["VerdictGiven"] = "VerdictGiven"
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)


class CheckOutcome(Model):
    """A check the implementer ran, as the runner observed it."""

    name: str
    exit_code: int | None
    """None when the check did not run (skipped)."""
    output_tail: str = ""


class PatchProduced(_StageResult):
    """The implementer finished; the adapter committed its workspace diff locally."""

    kind: Literal["PatchProduced"] = "PatchProduced"
    patch: Patch
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The local commit holding the patch (not yet pushed to the task branch)."""
    ref: str | None = None
    """Where the forge kept the commit for the record, whatever the core decides of it."""
    checks: list[CheckOutcome] = Field(default_factory=list)
    summary: str = ""
    note: ImplementationNote | None = None
    """What the implementer said of it (carried to the code reviewer and the PR)."""


class CIFinished(Model):
    """CI on a head finished (sandbox run or forge checks)."""

    kind: Literal["CIFinished"] = "CIFinished"
    head_sha: str = Field(pattern=SHA_PATTERN)
    state: Literal["success", "failure", "timeout"]
    failed_checks: list[FailedCheck] = Field(default_factory=list)
    attempt: int | None = None
    """The CI attempt, for sandbox CI; None for forge checks (matched by head only)."""
    usage: Usage = Field(default_factory=Usage)
    proof: Proof | None = None
    """Break/fix and weakening, from a sandbox CI run that was asked for them."""


class MergeFinished(Model):
    """The forge's answer to a merge request."""

    kind: Literal["MergeFinished"] = "MergeFinished"
    attempt: int = Field(ge=1)
    outcome: Literal["merged", "queued", "conflict", "base-moved", "blocked", "error"]
    """`queued`: the forge's own merge queue (GitHub's) holds it and merges it when its
    checks pass there; asked again later."""
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The head the forge merged (or tried to)."""
    merged_sha: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The commit on the base branch, for `merged`."""
    new_head_sha: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The rebased head, for `base-moved`."""
    message: str = ""


class HumanAction(Model):
    """A person approved, retried or cancelled (annotation or forge review)."""

    kind: Literal["HumanAction"] = "HumanAction"
    action: Literal["approve", "retry", "cancel", "request-changes"]
    by: str = Field(min_length=1)
    feedback: str = ""
    """For request-changes: what the person asked for (their review and its comments)."""


class UsageReported(Model):
    """Tokens spent by a running stage (increments)."""

    kind: Literal["UsageReported"] = "UsageReported"
    usage: Usage


class StageFailed(Model):
    """A stage attempt ended without a usable result."""

    kind: Literal["StageFailed"] = "StageFailed"
    stage: Stage
    attempt: int = Field(ge=1)
    reason: FailureReason
    message: str = ""
    usage: Usage = Field(default_factory=Usage)


class SpecInvalid(Model):
    """The task or its factory is invalid (or the factory does not exist)."""

    kind: Literal["SpecInvalid"] = "SpecInvalid"
    message: str


class PullRequestOpened(Model):
    """The forge reported the task's pull request."""

    kind: Literal["PullRequestOpened"] = "PullRequestOpened"
    number: int = Field(ge=1)
    url: str


Observation = Annotated[
    DependenciesReady
    | DependencyCycle
    | Admitted
    | MergeSlotGranted
    | QueueRebased
    | QueueConflict
    | QueueSettled
    | QueueVerified
    | BatchSplit
    | PlanProduced
    | VerdictGiven
    | PatchProduced
    | CIFinished
    | MergeFinished
    | HumanAction
    | UsageReported
    | StageFailed
    | SpecInvalid
    | PullRequestOpened,
    Field(discriminator="kind"),
]
