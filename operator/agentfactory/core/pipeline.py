"""The pipeline decision: one observation in, the new status and the actions out.

:func:`decide` is pure: it reads the task's spec and status, its factory's spec, one
observation and the time, and returns a :class:`Decision`. It never performs I/O; adapters
perform the returned actions and write the status once. Phase moves go only along the
edges of :mod:`agentfactory.core.transitions`.

Retry accounting: entering a stage spends one attempt of it. A stage may be attempted
`1 + retries.perStage` times per round and all stages `retries.maxTotalAttempts` times
per round; past either, or past the budget, the task goes to NeedsAttention. A person's
retry starts a new round (attempt numbers keep counting, so pod names stay unique).

Freshness: every accepted implementer patch gets a new `patchRevision`. Reviews and
approvals record the revision they saw; the task merges only when the code review's APPROVE
and every escalation approval name the current revision and CI is green on the exact head
being merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.actions import Notify, PushBranch
from agentfactory.core.phases import (
    ACTIVE,
    RETRYABLE,
    TERMINAL,
    Phase,
    Stage,
    Verdict,
)
from agentfactory.core.policies.escalation import MAX_MATCHES_PER_RULE, evaluate_escalation
from agentfactory.core.policies.guardrails import check_guardrails
from agentfactory.core.step import (
    Decision,
    Ignored,
    Step,
    TaskView,
    approve_hint,
    must,
    retry_hint,
)
from agentfactory.core.task import (
    CIRecord,
    EscalationMatch,
    EscalationRecord,
    FailedCheck,
    Finding,
    GuardrailViolation,
    KeptPatch,
    PullRequestRef,
    QueuePlace,
    ReviewRecord,
)
from agentfactory.core.transitions import Trigger

if TYPE_CHECKING:
    from datetime import datetime

    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import (
        Admitted,
        BatchSplit,
        CIFinished,
        DependenciesReady,
        DependencyCycle,
        HumanAction,
        MergeFinished,
        MergeSlotGranted,
        Observation,
        PatchProduced,
        PlanProduced,
        PullRequestOpened,
        QueueConflict,
        QueueRebased,
        QueueSettled,
        QueueVerified,
        SpecInvalid,
        StageFailed,
        UsageReported,
        VerdictGiven,
    )

P = Phase
T = Trigger


def decide(
    task: TaskView, factory: FactorySpecSpec, observation: Observation, *, now: datetime
) -> Decision:
    """Apply *observation* to *task* under *factory*'s rules."""
    return _Step(task, factory, now).run(observation)


def _login(name: str) -> str:
    return name.lstrip("@").casefold()


class _Step(Step):
    """The handlers: one per kind of observation."""

    # -- scheduling --------------------------------------------------------------------

    def _on_DependenciesReady(self, _: DependenciesReady) -> None:  # noqa: N802
        self._require(P.PENDING)
        self._move(T.DEPENDENCIES_READY, P.QUEUED, "every dependency is Merged")

    def _on_DependencyCycle(self, obs: DependencyCycle) -> None:  # noqa: N802
        self._require(P.PENDING)
        cycle = " -> ".join(obs.cycle)
        self._move(
            T.DEPENDENCY_CYCLE,
            P.FAILED,
            # The validator's words: the same problem reads the same wherever it is found.
            f"spec.dependsOn: is part of the dependency cycle {cycle}; remove one dependsOn entry",
        )
        self.actions.append(Notify(T.DEPENDENCY_CYCLE.value, f"{self.name}: cycle {cycle}"))

    def _on_Admitted(self, _: Admitted) -> None:  # noqa: N802
        self._require(P.QUEUED)
        resume = self.status.resume_from
        self.status.resume_from = None
        self.status.branch = self.status.branch or (
            self.factory.repository.branch_prefix + self.name
        )
        if resume is None or resume == Stage.PLAN:
            trigger = T.ADMITTED if resume is None else T.RESUMED
            self._enter(Stage.PLAN, trigger, "slot granted", self.status.feedback)
            return
        self._enter(resume, T.RESUMED, f"resuming at {resume}", self.status.feedback)

    def _on_MergeSlotGranted(self, _: MergeSlotGranted) -> None:  # noqa: N802
        self._require(P.MERGING)
        if self.status.attempt != 0:
            raise Ignored(f"merge attempt {self.status.attempt} is already running")
        limit = self._limit_problem(Stage.MERGE)
        if limit is not None:
            self._park(*limit)
            return
        self._move(T.MERGE_STARTED, P.MERGING, "merge slot granted")
        self._start_attempt(Stage.MERGE)

    # -- stage results -----------------------------------------------------------------

    def _on_PlanProduced(self, obs: PlanProduced) -> None:  # noqa: N802
        self._require_attempt(obs.stage, obs.attempt)
        if not self._add_usage(obs.usage):
            return
        self.status.plan = obs.plan
        questions = obs.plan.open_questions
        if questions:
            # The spec leaves something unclear that an agent must not guess: a person answers
            # (approves the plan as it stands, or cancels and writes a clearer task).
            asked = "; ".join(q[:300] for q in questions[:10])
            self._move(T.QUESTIONS_OPEN, P.AWAITING_APPROVAL,
                       f"the planner has open questions: {asked}; {approve_hint(self.name)}"
                       " to go on with the plan as it stands, or cancel and create a clearer"
                       " task")  # fmt: skip
            self.status.resume_from, self.status.attempt = Stage.PLAN_REVIEW, 0
            self.actions.append(Notify(T.QUESTIONS_OPEN.value, f"{self.name}: {asked}"))
            return
        self._enter(Stage.PLAN_REVIEW, T.PLAN_PRODUCED, obs.plan.summary[:200], None)

    def _on_VerdictGiven(self, obs: VerdictGiven) -> None:  # noqa: N802
        if obs.stage not in (Stage.PLAN_REVIEW, Stage.CODE_REVIEW):
            raise Ignored(f"a verdict cannot come from stage {obs.stage}")
        self._require_attempt(obs.stage, obs.attempt)
        if not self._add_usage(obs.usage):
            return
        revision = self.status.patch_revision if obs.stage == Stage.CODE_REVIEW else 0
        self.status.last_review = ReviewRecord(
            stage=obs.stage,
            attempt=obs.attempt,
            verdict=obs.verdict,
            findings=obs.findings[:50],
            revision=revision,
        )
        approved = obs.verdict == Verdict.APPROVE
        if obs.stage == Stage.PLAN_REVIEW:
            if approved:
                self._enter(Stage.IMPLEMENT, T.PLAN_APPROVED, "plan approved", None)
            else:
                self._enter(
                    Stage.PLAN,
                    T.PLAN_REJECTED,
                    f"plan review asked for changes ({len(obs.findings)} findings)",
                    _findings_feedback("The plan reviewer asked for changes", obs.findings),
                )
            return
        if approved:
            self._after_review(T.REVIEW_APPROVED, "code review approved")
        else:
            self._enter(
                Stage.IMPLEMENT,
                T.REVIEW_REJECTED,
                f"code review asked for changes ({len(obs.findings)} findings)",
                _findings_feedback("The code reviewer asked for changes", obs.findings),
            )

    def _on_PatchProduced(self, obs: PatchProduced) -> None:  # noqa: N802
        self._require_attempt(obs.stage, obs.attempt)
        if not self._add_usage(obs.usage):
            return
        scope = self.spec.scope.paths
        violations = check_guardrails(obs.patch, self.factory.guardrails, scope)
        violations += [
            GuardrailViolation(
                rule="checks-failed",
                message=f"check {check.name!r} exited {check.exit_code}:"
                f" {check.output_tail[-400:]}",
            )
            for check in obs.checks
            if check.exit_code not in (0, None)
        ]
        self.status.guardrail_violations = violations[:50]
        if obs.ref is not None and obs.head_sha:
            kept = KeptPatch(attempt=obs.attempt, ref=obs.ref, sha=obs.head_sha,
                             accepted=not violations)  # fmt: skip
            self.status.patches = [*self.status.patches, kept][-100:]
        if violations:
            self._enter(
                Stage.IMPLEMENT,
                T.PATCH_REJECTED,
                f"patch rejected: {violations[0].message}"
                + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                "The patch was rejected; fix every item and hand off again:\n"
                + "\n".join(f"- [{v.rule}] {v.message}" for v in violations[:50]),
            )
            return
        self.status.patch_revision += 1
        self.status.head_sha = obs.head_sha
        self.status.implementation = obs.note
        self.status.ci = None
        matches = evaluate_escalation(self.factory.escalation.rules, obs.patch)
        rules = list(dict.fromkeys(m.rule for m in matches))
        self.status.escalation = EscalationRecord(
            revision=self.status.patch_revision,
            matches=matches,
            rules=rules,
            reason="; ".join(
                f"{m.rule} on {m.file}" + (f":{m.line}" if m.line else "") for m in matches[:5]
            ),
        )
        branch = self.status.branch or self.factory.repository.branch_prefix + self.name
        self.status.branch = branch
        self.actions.append(PushBranch(branch, obs.head_sha))
        parked = [m for m in matches if m.action == "Park"]
        if parked:
            rules_parked = sorted({m.rule for m in parked})
            self._park(
                T.ESCALATION_PARKED,
                f"escalation rules {', '.join(rules_parked)} park the task:"
                f" {self.status.escalation.reason}; {approve_hint(self.name)}",
            )
            self.status.stage, self.status.attempt = Stage.CI, 0  # where approval resumes
            return
        self._enter(
            Stage.CI,
            T.PATCH_ACCEPTED,
            f"revision {self.status.patch_revision}: {obs.summary[:200]}",
            None,
        )

    def _on_CIFinished(self, obs: CIFinished) -> None:  # noqa: N802
        self._require(P.CI)
        if obs.head_sha != self.status.head_sha:
            raise Ignored(f"CI result for {obs.head_sha[:12]}, not the current head")
        if obs.attempt is not None and obs.attempt != self.status.attempt:
            raise Ignored(f"stale CI attempt {obs.attempt}")
        if not self._add_usage(obs.usage):
            return
        failed = [*obs.failed_checks, *self._weigh_weakenings(obs)]
        state = "failure" if failed and obs.state == "success" else obs.state
        self.status.ci = CIRecord(
            state=state, head_sha=obs.head_sha, failed_checks=failed[:20], proof=obs.proof
        )
        if state == "success":
            review = self.status.last_review
            reviewed = (
                review is not None
                and review.stage == Stage.CODE_REVIEW
                and review.verdict == Verdict.APPROVE
                and review.revision == self.status.patch_revision
            )
            if reviewed:
                self._after_review(T.CI_PASSED_REVIEWED, "re-verified on the moved base")
            else:
                self._enter(Stage.CODE_REVIEW, T.CI_PASSED, "required checks green", None)
            return
        if obs.state == "timeout":
            self._park(
                T.CI_TIMED_OUT,
                f"CI did not finish within ci.timeoutSeconds {self.factory.ci.timeout_seconds}"
                " on the head; check the CI system, then retry",
            )
            return
        queue = self.status.queue
        if queue is not None and queue.ahead:
            # Its head carries the changes queued ahead of it: until they merge, the failure
            # may be theirs. It waits; the scheduler settles it or builds it again.
            names = ", ".join(check.name for check in failed) or "unknown checks"
            self._move(T.CI_HELD, P.CI, f"CI failed ({names}) on top of {', '.join(queue.ahead)}"
                       " ahead in the merge queue: held until they merge, to tell whose"
                       " failure it is")  # fmt: skip
            self.status.attempt = 0
            return
        self._ci_failed(failed)

    def _ci_failed(self, failed: list[FailedCheck]) -> None:
        names = [check.name for check in failed]
        self._enter(
            Stage.IMPLEMENT,
            T.CI_FAILED,
            f"CI failed: {', '.join(names) or 'unknown checks'}",
            "CI failed on your last patch; make these checks pass:\n"
            + "\n".join(f"- {c.name}:\n{c.summary[-2000:]}" for c in failed[:20]),
        )

    # -- the merge queue ---------------------------------------------------------------

    def _in_queue(self, from_sha: str) -> QueuePlace:
        self._require(P.MERGING, P.CI)
        queue = self.status.queue
        if queue is None:
            raise Ignored("not in the merge queue")
        if from_sha != self.status.head_sha:
            raise Ignored(f"built from {from_sha[:12]}, not the current head")
        if self.phase == P.MERGING and self.status.attempt != 0:
            raise Ignored(f"merge attempt {self.status.attempt} is already running")
        return queue

    def _on_QueueRebased(self, obs: QueueRebased) -> None:  # noqa: N802
        queue = self._in_queue(obs.from_sha)
        queue.onto, queue.ahead, queue.conflict = obs.onto, obs.ahead[:100], None
        queue.built = True
        on = f"on top of {', '.join(obs.ahead)}" if obs.ahead else "on the base"
        if obs.head_sha == self.status.head_sha:
            # Nothing to replay: its place is recorded. A head no run verified yet (it waited
            # for its batch) is verified by a run of its own when it now ends a batch.
            waiting = self.phase == P.MERGING and self.status.ci is None
            queue.covered = obs.covered and waiting
            if waiting and not obs.covered:
                self._enter(Stage.CI, T.QUEUE_REBASED, f"built {on} in the merge queue, last"
                            " of its batch: verifying it", None, retry=False)  # fmt: skip
            return
        self._cancel_live_stage()
        self.status.head_sha = obs.head_sha
        self.status.ci = None
        queue.covered = obs.covered
        branch = self.status.branch or self.factory.repository.branch_prefix + self.name
        self.actions.append(PushBranch(branch, obs.head_sha))
        if obs.covered:
            self._enter(Stage.MERGE, T.QUEUE_REBASED, f"built {on} in the merge queue: the CI"
                        " run of the last task of its batch verifies it", None,
                        retry=False)  # fmt: skip
            return
        self._enter(Stage.CI, T.QUEUE_REBASED, f"built {on} in the merge queue: verifying it"
                    " with every change that merges before it", None, retry=False)  # fmt: skip

    def _covered(self, head_sha: str, stale: str) -> QueuePlace:
        """Its place, while it waits in Merging for its batch's run with head *head_sha*."""
        self._require(P.MERGING)
        queue = self.status.queue
        if queue is None or not queue.covered:
            raise Ignored("not waiting for its batch's CI run")
        if head_sha != self.status.head_sha:
            raise Ignored(f"{stale} {head_sha[:12]}, not the current head")
        return queue

    def _on_QueueVerified(self, obs: QueueVerified) -> None:  # noqa: N802
        self._covered(obs.head_sha, f"{obs.by}'s run carried")
        if self.status.ci is not None:
            raise Ignored("already verified")
        self.status.ci = CIRecord(state="success", head_sha=obs.head_sha, verified_by=obs.by)
        self.status.message = (f"verified by {obs.by}'s CI run, which carried it (its batch):"
                               " waits for its turn to merge")  # fmt: skip

    def _on_BatchSplit(self, obs: BatchSplit) -> None:  # noqa: N802
        queue = self._covered(obs.head_sha, "split at")
        if self.status.ci is not None:
            raise Ignored("already verified by its batch's run")
        queue.covered = False
        why = (f"the batch {obs.failed} ended failed CI: verifying this task's head on its"
               " own run, to find whose change failed" if obs.failed else
               "no task behind it in the merge queue carries it any more: verifying its head"
               " on its own run")  # fmt: skip
        self._enter(Stage.CI, T.BATCH_SPLIT, why, None, retry=False)

    def _on_QueueConflict(self, obs: QueueConflict) -> None:  # noqa: N802
        queue = self._in_queue(obs.from_sha)
        if obs.onto is None:
            self._cancel_live_stage()
            self._conflicts_with_base(obs.message)
            return
        if queue.conflict == obs.onto:
            raise Ignored("the conflict is already recorded")
        queue.conflict = obs.onto
        ahead = obs.ahead[-1] if obs.ahead else "the task ahead"
        self.status.message = (f"conflicts with {ahead} ahead in the merge queue"
                               f" ({obs.message[:300]}): waits for it to merge")  # fmt: skip

    def _conflicts_with_base(self, said: str) -> None:
        self._enter(
            Stage.IMPLEMENT,
            T.MERGE_CONFLICT,
            f"merge conflict with {self.factory.repository.base_branch}",
            "Your branch conflicts with the base branch; rebase the change onto the"
            f" current base and resolve the conflicts.\n{said[-2000:]}",
        )

    def _on_QueueSettled(self, _: QueueSettled) -> None:  # noqa: N802
        self._require(P.CI)
        if not self.status.ci_held or self.status.ci is None:
            raise Ignored("no CI failure is held")
        self._ci_failed(self.status.ci.failed_checks)

    def _weigh_weakenings(self, obs: CIFinished) -> list[FailedCheck]:
        """What the tests CI found weakened do under `guardrails.testWeakening`: the failed
        check that sends them back, or nothing, having made them wait for a person after
        review (an escalation of this revision), or recorded them only."""
        proof, mode = obs.proof, self.factory.guardrails.test_weakening
        if proof is None or not proof.weakenings or obs.state == "timeout" or mode == "warn":
            return []
        if mode == "sendBack" and not self.status.weakening_sent_back:
            self.status.weakening_sent_back = True
            said = "; ".join(f"{w.file}: {w.message}" for w in proof.weakenings)
            said += "; keep the tests as strong as they were and fix the code instead"
            return [FailedCheck(name="test-weakening", summary=said[-2000:])]
        record = self.status.escalation
        if record is None or record.revision != self.status.patch_revision:
            record = EscalationRecord(revision=self.status.patch_revision)
        if WEAKENING_RULE not in record.rules:  # a re-verification keeps its approval
            found = [
                EscalationMatch(rule=WEAKENING_RULE, action="RequireApproval", file=w.file,
                                line=w.line, text=f"{w.test}: {w.message}"[:200])
                for w in proof.weakenings[:MAX_MATCHES_PER_RULE]
            ]  # fmt: skip
            said = "; ".join(f"{WEAKENING_RULE} in {w.file}: {w.message}"
                             for w in proof.weakenings[:5])  # fmt: skip
            record.matches = [*record.matches, *found]
            record.rules = [*record.rules, WEAKENING_RULE]
            record.reason = "; ".join(part for part in (record.reason, said) if part)
            record.approved_by = None  # whoever approved before had not seen the weakening
        self.status.escalation = record
        return []

    def _on_MergeFinished(self, obs: MergeFinished) -> None:  # noqa: N802
        self._require(P.MERGING)
        if self.status.attempt == 0 or obs.attempt != self.status.attempt:
            raise Ignored(f"stale merge attempt {obs.attempt}")
        if obs.outcome == "merged":
            problem = self._merge_unverified(obs)
            if problem:
                self._park(T.MERGE_UNVERIFIED, problem)
                return
            self.status.merged_sha = obs.merged_sha
            self._move(T.MERGED, P.MERGED, f"merged as {obs.merged_sha or '?'}")
            return
        if obs.outcome == "queued":
            queue = self.status.queue
            if queue is None:
                raise Ignored("queued on the forge, but not in the merge queue")
            said = obs.message or "in the forge's merge queue"
            if queue.on_forge == said:
                raise Ignored("still in the forge's merge queue")
            queue.on_forge = said
            self.status.message = said
            return
        if obs.outcome == "conflict":
            self._conflicts_with_base(obs.message)
            return
        if obs.outcome == "blocked":  # a rule of the forge's, not the change: a person acts
            self._park(T.MERGE_BLOCKED, obs.message)
            return
        if obs.outcome == "base-moved":
            if obs.new_head_sha is None:
                raise Ignored("base-moved without the rebased head")
            if obs.new_head_sha == self.status.head_sha:  # nothing moved: it would never end
                self._park(T.MERGE_BLOCKED, f"the forge says the base moved but left the head at"
                           f" {obs.new_head_sha[:12]}; retry the task")  # fmt: skip
                return
            self.status.head_sha = obs.new_head_sha
            self.status.ci = None
            if self.status.queue is not None:  # the forge built it on the base itself
                self.status.queue.onto, self.status.queue.ahead = None, []
                self.status.queue.built = True
            # Neither this merge attempt nor the CI run it calls for failed, so the retry caps
            # do not count them: a task waiting behind others in a busy merge queue is not
            # failing. Other merges are what move the base, so the loop ends as the queue does.
            self._uncounted(Stage.MERGE)
            self._enter(Stage.CI, T.BASE_MOVED, "base moved; re-verifying the rebased head", None,
                        retry=False)  # fmt: skip
            return
        if self.status.queue is not None:  # out of the forge's queue, if it was in it
            self.status.queue.on_forge = None
        self._enter(Stage.MERGE, T.STAGE_RETRIED, f"merge failed: {obs.message[:500]}", None)

    def _merge_unverified(self, obs: MergeFinished) -> str | None:
        """Why this merge must not count as verified, or None."""
        status = self.status
        review = status.last_review
        if obs.head_sha != status.head_sha:
            return (
                f"the forge merged {obs.head_sha[:12]}, not the verified head"
                f" {(status.head_sha or '?')[:12]}; inspect the base branch now"
            )
        if status.ci is None or status.ci.state != "success" or status.ci.head_sha != obs.head_sha:
            return "merged without green CI on this head; inspect the base branch now"
        if (
            review is None
            or review.verdict != Verdict.APPROVE
            or review.stage != Stage.CODE_REVIEW
            or review.revision != status.patch_revision
        ):
            return "merged without an approving code review of this revision; inspect it now"
        if self._approval_needed():
            return "merged without the required human approval; inspect the base branch now"
        return None

    def _on_StageFailed(self, obs: StageFailed) -> None:  # noqa: N802
        self._require_attempt(obs.stage, obs.attempt)
        if not self._add_usage(obs.usage):
            return
        if obs.reason == "setup":
            # Every attempt would fail the same way: a person mends the set-up, then retries
            # from this stage, with no attempt of the task's spent on it.
            fix = f"the factory's set-up, not the task: fix it, then {retry_hint(self.name)}"
            said = obs.message[:500]
            self._park(T.SETUP_FAILED, f"{obs.stage} cannot run: {said}; this is {fix}")
            self.status.stage, self.status.attempt = obs.stage, 0
            return
        self._enter(
            obs.stage,
            T.STAGE_RETRIED,
            f"{obs.stage} attempt {obs.attempt} failed ({obs.reason}): {obs.message[:500]}",
            self.status.feedback,
        )

    def _on_UsageReported(self, obs: UsageReported) -> None:  # noqa: N802
        if self.phase not in ACTIVE:
            raise Ignored(f"usage reported in phase {self.phase}")
        self._add_usage(obs.usage)

    def _on_PullRequestOpened(self, obs: PullRequestOpened) -> None:  # noqa: N802
        pr = PullRequestRef(number=obs.number, url=obs.url)
        if self.status.pull_request == pr:
            raise Ignored("pull request already recorded")
        self.status.pull_request = pr

    # -- people and the spec -----------------------------------------------------------

    def _on_HumanAction(self, obs: HumanAction) -> None:  # noqa: N802
        if obs.action == "cancel":
            if self.phase in (P.MERGED, P.CANCELLED):
                raise Ignored(f"cannot cancel a task in {self.phase}")
            self._cancel_live_stage()
            self._move(T.HUMAN_CANCELLED, P.CANCELLED, f"cancelled by {obs.by}")
            return
        if obs.action == "retry":
            if self.phase not in RETRYABLE:
                raise Ignored(f"retry applies to {', '.join(sorted(RETRYABLE))}, not {self.phase}")
            resume = self.status.stage
            self._move(T.HUMAN_RETRIED, P.PENDING, f"retried by {obs.by}")
            self.status.round += 1
            self.status.round_baseline = self.status.attempts.model_copy()
            self.status.round_baseline_total = self.status.total_attempts
            self.status.resume_from = resume
            self.status.stage, self.status.attempt = None, 0
            return
        approvers = self.factory.escalation.approvers
        # GitHub logins are case-insensitive, so the listed ones are too, on every path.
        if approvers and _login(obs.by) not in {_login(a) for a in approvers}:
            raise Ignored(f"{obs.by} is not in escalation.approvers ({', '.join(approvers)})")
        if obs.action == "request-changes":
            # A person's review is a reviewer's verdict: back to the implementer with it, on
            # the retry caps like any other.
            if self.phase not in CHANGEABLE or self.status.resume_from == Stage.PLAN_REVIEW:
                raise Ignored(f"no patch awaits a person's review in phase {self.phase}")
            self._cancel_live_stage()
            self._enter(Stage.IMPLEMENT, T.HUMAN_CHANGES_REQUESTED,
                        f"{obs.by} requested changes on the pull request",
                        f"A person ({obs.by}) reviewed the patch and asked for changes; address"
                        f" every point:\n{obs.feedback[:20000]}")  # fmt: skip
            return
        record = self.status.escalation
        if self.phase == P.AWAITING_APPROVAL and self.status.resume_from == Stage.PLAN_REVIEW:
            self.status.resume_from = None  # the plan's open questions: on to its review
            go_on = f"approved by {obs.by}: go on with the plan as it stands"
            self._enter(Stage.PLAN_REVIEW, T.HUMAN_APPROVED, go_on, None)
            return
        if self.phase == P.AWAITING_APPROVAL:
            must(record, "escalation record").approved_by = obs.by
            self._enter(Stage.MERGE, T.HUMAN_APPROVED, f"approved by {obs.by}", None)
            return
        if self.phase == P.NEEDS_ATTENTION and self.status.reason == T.ESCALATION_PARKED:
            must(record, "escalation record").approved_by = obs.by
            # Parking released the slot and the path lock: queue for them again.
            self._move(T.HUMAN_APPROVED, P.QUEUED, f"approved by {obs.by}; resuming at CI")
            self.status.resume_from, self.status.stage, self.status.attempt = Stage.CI, None, 0
            return
        raise Ignored(f"nothing awaits approval in phase {self.phase}")

    def _on_SpecInvalid(self, obs: SpecInvalid) -> None:  # noqa: N802
        if self.phase in TERMINAL:
            raise Ignored(f"task already ended in {self.phase}")
        self._cancel_live_stage()
        self._move(T.SPEC_INVALID, P.FAILED, obs.message)
        self.actions.append(Notify(T.SPEC_INVALID.value, f"{self.name}: {obs.message}"))


#: The escalation a weakened test that waits for a person is recorded under.
WEAKENING_RULE = "test-weakening"

#: Phases in which a person's request for changes sends the patch back to the implementer.
CHANGEABLE = (P.CI, P.CODE_REVIEW, P.AWAITING_APPROVAL)


def _findings_feedback(title: str, findings: list[Finding]) -> str:
    lines = [f"{title}:"]
    for finding in findings[:50]:
        where = f"{finding.file}:{finding.line}" if finding.line else (finding.file or "general")
        lines.append(f"- [{finding.severity}] {where}: {finding.message}")
        if finding.would_change_verdict:
            lines.append(f"  (would change the verdict: {finding.would_change_verdict})")
    return "\n".join(lines)


__all__ = ["CHANGEABLE", "Decision", "TaskView", "decide"]
