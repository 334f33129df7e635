"""What both executors share around a stage attempt: the inputs it is given, and the
observation its outcome becomes.

The local driver runs an attempt as a process and the operator as a pod, but they give it
the same contract on the same commit and read its result the same way, so a task moves
through the same phases on a laptop and on a cluster. The implementer's diff is committed
by the operator's forge here: agents never hold a credential that can write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfactory.core.contracts import contract_for
from agentfactory.core.diff import parse_unified_diff
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.observations import (
    CheckOutcome,
    CIFinished,
    MergeFinished,
    Observation,
    PatchProduced,
    PlanProduced,
    StageFailed,
    VerdictGiven,
)
from agentfactory.core.phases import Stage
from agentfactory.core.task import FailedCheck, ImplementationNote, PlanSummary

if TYPE_CHECKING:
    from agentfactory.core.common import Check
    from agentfactory.core.forges import Forge
    from agentfactory.core.handoff import AgentResult, CheckReport, HandoffContract
    from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus
    from agentfactory.core.work import Merge


NO_FACTORY = FactorySpecSpec.model_validate(
    {"repository": {"url": "-"}, "checks": [], "merge": {"auto": False}}
)
"""A neutral factory to decide a task's SpecInvalid by when its own factory is missing or
invalid (that decision reads the task's status alone)."""


@dataclass(frozen=True)
class AgentInputs:
    """What one agent attempt is given: its contract, the commit to check out, and the base
    its diff is taken against."""

    contract: HandoffContract
    ref: str
    base: str


def agent_inputs(
    name: str, spec: AgentTaskSpec, factory: FactorySpecSpec, status: AgentTaskStatus,
    forge: Forge,
) -> AgentInputs:  # fmt: skip
    """The contract and commit of the task's current agent attempt."""
    stage = status.stage or Stage.PLAN
    base = forge.base_sha()
    ref, feedback = base, None
    if status.head_sha and stage in (Stage.IMPLEMENT, Stage.CODE_REVIEW):
        on_base = forge.merge_base(status.head_sha, base) == base
        if on_base or stage == Stage.CODE_REVIEW:
            ref = status.head_sha
            base = forge.merge_base(status.head_sha, base)
        elif status.feedback:
            # The base moved under a conflicting branch: start again from the new base,
            # with the previous attempt's patch to redo.
            previous = forge.diff(base, status.head_sha)
            feedback = f"{status.feedback}\n\nYour previous patch:\n{previous[-20000:]}"
    contract = contract_for(
        task=name, spec=spec, factory=factory, status=status, stage=stage, base_sha=base,
        feedback=feedback,
    )  # fmt: skip
    return AgentInputs(contract, ref, base)


def agent_observation(
    name: str, forge: Forge, stage: Stage, attempt: int, base: str, result: AgentResult
) -> Observation:
    """What an agent attempt's result tells the core; a patch is committed on *base*."""
    usage = result.usage
    if result.status != "completed":
        return StageFailed(
            stage=stage, attempt=attempt, usage=usage,
            reason="setup" if result.stopped_by == "api-key" else "error",
            message=f"{result.stopped_by}: {result.message}",
        )  # fmt: skip
    if result.plan is not None:
        given = result.plan
        plan = PlanSummary(
            summary=given.summary, steps=given.steps, files=given.files_in_scope,
            risky_interfaces=given.risky_interfaces, tests_to_add_first=given.tests_to_add_first,
            open_questions=given.open_questions,
        )  # fmt: skip
        return PlanProduced(stage=stage, attempt=attempt, plan=plan, usage=usage)
    if result.verdict is not None:
        return VerdictGiven(
            stage=stage, attempt=attempt, verdict=result.verdict.verdict,
            findings=result.verdict.findings, usage=usage,
        )  # fmt: skip
    implementation = result.implementation
    diff = result.diff or ""
    summary = implementation.summary if implementation else ""
    head, ref = base, None
    if diff.strip():
        head = forge.commit_patch(base, diff, f"{name}: {summary[:72]}")
        ref = forge.keep(name, f"{stage.slug}-{attempt}", head)  # accepted or not
    checks = [
        CheckOutcome(name=c.name, exit_code=c.exit_code, output_tail=c.output_tail)
        for c in (implementation.checks if implementation else [])
    ]
    note = None
    if implementation is not None:
        note = ImplementationNote(
            summary=implementation.summary, not_found=implementation.not_found,
            skipped=implementation.skipped, rollback=implementation.rollback,
            checks=[f"{c.name}: {c.status}" for c in implementation.checks],
        )  # fmt: skip
    return PatchProduced(
        stage=stage, attempt=attempt, patch=parse_unified_diff(diff), head_sha=head, ref=ref,
        checks=checks, summary=summary, usage=usage, note=note,
    )  # fmt: skip


def ci_checks(spec: AgentTaskSpec, factory: FactorySpecSpec) -> list[Check]:
    """The checks a sandbox CI run executes: the factory's required ones and the task's own."""
    required = set(factory.required_check_names)
    return [c for c in [*factory.checks, *spec.checks] if c.name in required or c in spec.checks]


def ci_observation(status: AgentTaskStatus, report: CheckReport) -> CIFinished:
    """The CI verdict on the task's head from the checks' runs and, when the factory asks
    for it, the proof that the patch's tests prove the fix (the core weighs any weakened
    test by `guardrails.testWeakening`)."""
    failed = [
        FailedCheck(name=r.name, summary=r.output_tail[-2000:])
        for r in report.checks
        if r.status != "passed"
    ]
    proof = report.proof
    if proof is not None and proof.required and proof.verdict != "proven":
        failed.append(FailedCheck(name="prove-fix", summary=proof.message[-2000:]))
    return CIFinished(
        head_sha=status.head_sha or "",
        state="failure" if failed else "success",
        failed_checks=failed,
        attempt=status.attempt,
        proof=proof,
    )


def change_title(name: str, spec: AgentTaskSpec) -> str:
    """A task's change in one line: its merge commit's title and its PR's."""
    return f"{name}: {spec.goal.splitlines()[0][:72]}"


def merge_observation(name: str, spec: AgentTaskSpec, work: Merge, forge: Forge) -> MergeFinished:
    """Merge the task's verified head (idempotent: a merge that landed is found, not redone)."""
    head, branch = work.head_sha, work.branch
    forge.push_branch(branch, head)
    outcome = forge.merge(
        task=name,
        branch=branch,
        head_sha=head,
        method=work.method,
        title=change_title(name, spec),
        body="\n".join(f"- {c}" for c in spec.acceptance_criteria),
        delete_branch=work.delete_branch,
    )
    return MergeFinished(
        attempt=work.attempt,
        outcome=outcome.outcome,
        head_sha=head,
        merged_sha=outcome.merged_sha,
        new_head_sha=outcome.new_head_sha,
        message=outcome.message,
    )
