"""The pipeline state machine: every edge of the transition table, every back-edge's retry
limit, budget exhaustion, stale and duplicate results, and human actions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from testbed.builders import CLEAN, Driver, factory, patch, sha

from agentfactory.core.actions import CancelStage, Notify, PushBranch
from agentfactory.core.observations import (
    CIFinished,
    PlanProduced,
    PullRequestOpened,
    QueueRebased,
    QueueSettled,
    QueueVerified,
    SpecInvalid,
    StageFailed,
    UsageReported,
    VerdictGiven,
)
from agentfactory.core.phases import ACTIVE, Phase, Stage, Verdict
from agentfactory.core.task import PlanSummary, Proof, Usage, WeakenedTest
from agentfactory.core.transitions import TRANSITIONS, Trigger
from agentfactory.core.work import AwaitChecks, Merge

if TYPE_CHECKING:
    from collections.abc import Callable

P, T = Phase, Trigger


def test_happy_path_launches_each_stage_once_and_merges_the_verified_head() -> None:
    d = Driver().to(P.MERGED)
    assert [a.name for a in d.launched()] == [
        "greet-plan-1",
        "greet-plan-review-1",
        "greet-implement-1",
        "greet-ci-1",
        "greet-code-review-1",
    ]
    assert [h.reason for h in d.status.history] == [
        "DependenciesReady", "Admitted", "PlanProduced", "PlanApproved", "PatchAccepted",
        "CIPassed", "ReviewApproved", "MergeStarted", "Merged",
    ]  # fmt: skip
    assert Merge("factory/greet", sha(1), "squash", 1, True) in d.started()
    assert PushBranch("factory/greet", sha(1)) in d.actions
    assert d.status.merged_sha == sha(0xBEEF)
    conditions = {c.type: c.status for c in d.status.conditions}
    assert conditions == {"Progressing": "False", "AwaitingHuman": "False", "Succeeded": "True"}


# -- every edge of the table -------------------------------------------------------------


def _cycle(d: Driver) -> None:
    from agentfactory.core.observations import DependencyCycle

    d.feed(DependencyCycle(cycle=["greet", "other", "greet"]))


def _park_at(stage_phase: Phase) -> Callable[[Driver], object]:
    """Drive to *stage_phase*, then exhaust its retries so a person's retry resumes there."""

    def setup(d: Driver) -> None:
        d.factory = factory(retries={"perStage": 0})
        d.to(stage_phase)
        if stage_phase == P.MERGING:
            d.grant()
            d.merged(outcome="error", merged_sha=None)
        else:
            d.fail()
        assert d.phase == P.NEEDS_ATTENTION and d.status.stage is not None

    return setup


def _to_needs_attention(d: Driver) -> None:
    d.to(P.CI)
    d.ci("timeout")


def _to_failed(d: Driver) -> None:
    d.feed(SpecInvalid(message="factory 'app' not found"))


def _to_cancelled(d: Driver) -> None:
    d.human("cancel")


def _to_awaiting(d: Driver) -> None:
    d.factory = factory(merge={"auto": False})
    d.to(P.CODE_REVIEW)
    d.verdict(Verdict.APPROVE)


def _enter(phase: Phase) -> Callable[[Driver], object]:
    special = {
        P.NEEDS_ATTENTION: _to_needs_attention,
        P.FAILED: _to_failed,
        P.CANCELLED: _to_cancelled,
        P.AWAITING_APPROVAL: _to_awaiting,
    }
    return special.get(phase, lambda d: d.to(phase))


def _stage_fails(d: Driver) -> None:
    if d.phase == P.MERGING:
        d.grant()
        d.merged(outcome="error", merged_sha=None)
    else:
        d.fail()


def _exhaust(d: Driver) -> None:
    d.factory = factory(retries={"perStage": 0})
    _stage_fails(d)


def _burn_budget(d: Driver) -> None:
    d.feed(UsageReported(usage=Usage(input_tokens=10**9)))


def _resume(phase: Phase) -> Callable[[Driver], object]:
    def run(d: Driver) -> None:
        _park_at(phase)(d)
        d.factory = factory()
        d.human("retry")
        d.ready()
        d.admit()

    return run


#: Per trigger: how to reach the edge's source phase (given) and fire the trigger.
FIRE: dict[Trigger, Callable[[Driver], object]] = {
    T.DEPENDENCIES_READY: lambda d: d.ready(),
    T.DEPENDENCY_CYCLE: _cycle,
    T.ADMITTED: lambda d: d.admit(),
    T.PLAN_PRODUCED: lambda d: d.plan(),
    T.QUESTIONS_OPEN: lambda d: d.plan("Which currency do totals use?"),
    T.PLAN_APPROVED: lambda d: d.verdict(Verdict.APPROVE),
    T.PLAN_REJECTED: lambda d: d.verdict(Verdict.REQUEST_CHANGES),
    T.PATCH_ACCEPTED: lambda d: d.patch(),
    T.PATCH_REJECTED: lambda d: d.patch(patch((".github/workflows/ci.yml", ["x"]))),
    T.ESCALATION_PARKED: lambda d: d.patch(patch(("src/db.py", ["DROP TABLE users"]))),
    T.CI_PASSED: lambda d: d.ci("success"),
    T.CI_FAILED: lambda d: d.ci("failure", ["test"]),
    T.CI_TIMED_OUT: lambda d: d.ci("timeout"),
    T.REVIEW_APPROVED: lambda d: d.verdict(Verdict.APPROVE),
    T.REVIEW_REJECTED: lambda d: d.verdict(Verdict.REQUEST_CHANGES),
    T.MERGE_STARTED: lambda d: d.grant(),
    T.MERGED: lambda d: (d.grant(), d.merged()),
    T.MERGE_CONFLICT: lambda d: (d.grant(), d.merged(outcome="conflict", merged_sha=None)),
    T.BASE_MOVED: lambda d: (
        (
            d.grant(),
            d.merged(outcome="base-moved", merged_sha=None, new_head_sha=sha(77)),
        )
    ),
    T.MERGE_UNVERIFIED: lambda d: (d.grant(), d.merged(head_sha=sha(999))),
    T.MERGE_BLOCKED: lambda d: (
        d.grant(),
        d.merged(outcome="blocked", merged_sha=None, message="Required status check missing"),
    ),
    T.STAGE_RETRIED: _stage_fails,
    T.SETUP_FAILED: lambda d: d.fail("setup"),
    T.RETRIES_EXHAUSTED: _exhaust,
    T.BUDGET_EXHAUSTED: _burn_budget,
    T.HUMAN_RETRIED: lambda d: d.human("retry"),
    T.HUMAN_CANCELLED: lambda d: d.human("cancel"),
    T.HUMAN_CHANGES_REQUESTED: lambda d: d.human("request-changes", feedback="rename total"),
    T.SPEC_INVALID: lambda d: d.feed(SpecInvalid(message="goal removed")),
    T.QUEUE_REBASED: lambda d: d.rebuilt(head=0x61),
    T.CI_HELD: lambda d: d.ci("failure", ["test"]),
    T.BATCH_SPLIT: lambda d: d.split(),
}


def _setup(source: Phase, trigger: Trigger, target: Phase) -> Callable[[Driver], object]:
    """Reach *source* in a way that lets *trigger* lead to *target*."""
    if trigger == T.RESUMED:
        return lambda d: None  # the resume recipe drives itself
    if trigger == T.HUMAN_APPROVED:
        if source == P.NEEDS_ATTENTION:
            return lambda d: (d.to(P.IMPLEMENTING), FIRE[T.ESCALATION_PARKED](d))
        if target == P.PLAN_REVIEW:  # the planner's open questions, answered
            return lambda d: (d.to(P.PLANNING), FIRE[T.QUESTIONS_OPEN](d))
        return _to_awaiting
    if trigger == T.APPROVAL_REQUIRED and source == P.CI:
        # A person approved, then the base moved: CI re-verifies; with merge.auto false the
        # approval of this revision still holds, so this edge needs an unapproved revision.
        def ci_without_approval(d: Driver) -> None:
            d.to(P.MERGING)
            d.factory = factory(merge={"auto": False})
            FIRE[T.BASE_MOVED](d)

        return ci_without_approval
    if source == P.CI and trigger in (T.QUEUE_REBASED, T.CI_HELD, T.MERGE_CONFLICT):
        return lambda d: (d.to(P.MERGING), d.rebuilt())  # verified in the merge queue
    if trigger == T.CI_PASSED_REVIEWED:
        return lambda d: (d.to(P.MERGING), FIRE[T.BASE_MOVED](d))
    if trigger == T.BATCH_SPLIT:
        return lambda d: (d.to(P.MERGING), d.rebuilt(covered=True))  # waits for its batch
    if trigger == T.APPROVAL_REQUIRED:
        return _to_awaiting_minus_review
    if source == P.AWAITING_APPROVAL:
        return _to_awaiting
    return _enter(source)


def _to_awaiting_minus_review(d: Driver) -> None:
    d.factory = factory(merge={"auto": False})
    d.to(P.CODE_REVIEW)


def _fire(source: Phase, trigger: Trigger, target: Phase) -> Callable[[Driver], object]:
    if trigger == T.RESUMED:
        return _resume(target)
    if trigger == T.HUMAN_APPROVED:
        return lambda d: d.human("approve")
    if trigger in (T.APPROVAL_REQUIRED, T.CI_PASSED_REVIEWED):
        return lambda d: d.ci() if source == P.CI else d.verdict(Verdict.APPROVE)
    if trigger == T.MERGE_CONFLICT and source == P.CI:
        return lambda d: d.conflict()
    if trigger == T.QUEUE_REBASED and target == P.MERGING:
        return lambda d: d.rebuilt(head=0x61, covered=True)
    return FIRE[trigger]


EDGES = sorted(TRANSITIONS)


@pytest.mark.parametrize("edge", [pytest.param(e, id=f"{e[0]}-{e[1]}-{e[2]}") for e in EDGES])
def test_every_edge_of_the_table_is_reachable(edge: tuple[Phase, Trigger, Phase]) -> None:
    source, trigger, target = edge
    d = Driver()
    _setup(source, trigger, target)(d)
    assert d.phase == source or trigger == T.RESUMED, f"setup reached {d.phase}, not {source}"
    taken_before = sum(len(x.transitions) for x in d.decisions)
    _fire(source, trigger, target)(d)
    taken = [t for x in d.decisions for t in x.transitions][taken_before:]
    assert edge in taken, f"expected {edge}, took {taken}; message: {d.status.message}"


def test_the_table_has_no_edge_out_of_merged() -> None:
    assert not [e for e in TRANSITIONS if e[0] == P.MERGED]


def test_open_questions_stop_the_plan_for_a_person_whose_approval_sends_it_to_review() -> None:
    d = Driver()
    d.to(P.PLANNING)
    d.plan("Which currency do totals use?", "May the API change?")
    assert d.phase == P.AWAITING_APPROVAL and d.status.reason == T.QUESTIONS_OPEN
    assert "Which currency do totals use?; May the API change?" in (d.status.message or "")
    assert d.status.plan is not None and d.status.plan.open_questions
    d.human("approve")
    assert d.phase == P.PLAN_REVIEW and d.status.resume_from is None
    # The reviewer and the implementer see the whole plan, the questions included.
    assert "Which currency" in json.dumps(d.status.plan.model_dump())


@pytest.mark.parametrize("phase", [P.CI, P.CODE_REVIEW, P.AWAITING_APPROVAL])
def test_a_persons_request_for_changes_sends_the_patch_back_with_their_words(
    phase: Phase,
) -> None:
    d = Driver()
    _to_awaiting(d) if phase == P.AWAITING_APPROVAL else _enter(phase)(d)
    d.factory = factory(merge={"auto": False}, escalation={"approvers": ["alice"]})
    before = d.status.attempts.implement
    d.human("request-changes", by="mallory", feedback="rename total")
    assert d.phase == phase, "only a listed approver's review counts"
    d.human("request-changes", feedback="- shop/cart.py:2: rename total to subtotal")
    assert d.phase == P.IMPLEMENTING and d.status.reason == T.HUMAN_CHANGES_REQUESTED
    assert "rename total to subtotal" in (d.status.feedback or "")
    assert d.status.attempts.implement == before + 1, "on the retry caps"


# -- back-edges spend retries of their target stage ---------------------------------------


BACK_EDGES = [
    pytest.param(P.PLAN_REVIEW, lambda d: d.verdict(Verdict.REQUEST_CHANGES), Stage.PLAN,
                 id="plan-review-rejects"),
    pytest.param(P.CI, lambda d: d.ci("failure", ["test"]), Stage.IMPLEMENT, id="ci-red"),
    pytest.param(P.CODE_REVIEW, lambda d: d.verdict(Verdict.REQUEST_CHANGES), Stage.IMPLEMENT,
                 id="code-review-rejects"),
    pytest.param(P.MERGING, lambda d: (d.grant(), d.merged(outcome="conflict", merged_sha=None)),
                 Stage.IMPLEMENT, id="merge-conflict"),
    pytest.param(P.IMPLEMENTING, lambda d: d.patch(patch(("README.md", ["x"]))), Stage.IMPLEMENT,
                 id="guardrail-rejects"),
]  # fmt: skip


@pytest.mark.parametrize("per_stage", [0, 1, 2])
@pytest.mark.parametrize(("phase", "send_back", "target"), BACK_EDGES)
def test_each_back_edge_stops_after_per_stage_retries(
    phase: Phase, send_back: Callable[[Driver], object], target: Stage, per_stage: int
) -> None:
    d = Driver(factory=factory(retries={"perStage": per_stage, "maxTotalAttempts": 100}))
    sent_back = 0
    while True:
        d.to(phase)
        send_back(d)
        if d.phase == P.NEEDS_ATTENTION:
            break
        sent_back += 1
        assert sent_back <= per_stage, "more retries than retries.perStage allows"
    assert sent_back == per_stage
    assert d.status.reason == T.RETRIES_EXHAUSTED
    assert d.status.attempts.of(target) == 1 + per_stage
    assert d.status.stage == target, "a person's retry must resume at the exhausted stage"
    assert f"retries.perStage is {per_stage}" in (d.status.message or "")
    assert any(isinstance(a, Notify) for a in d.decisions[-1].actions)
    assert d.decisions[-1].work is None, "a parked task has no work"


def test_back_edges_hand_the_objections_to_the_next_attempt() -> None:
    d = Driver().to(P.CI)
    d.ci("failure", ["test"])
    launch = d.launched()[-1]
    assert launch.stage == Stage.IMPLEMENT and launch.attempt == 2
    feedback = d.status.feedback
    assert feedback is not None and "test" in feedback and "boom" in feedback


def test_max_total_attempts_caps_all_stages_together() -> None:
    d = Driver(factory=factory(retries={"perStage": 5, "maxTotalAttempts": 4}))
    d.to(P.IMPLEMENTING)  # plan, plan review, implement: 3 attempts
    d.fail()  # the fourth
    assert d.phase == P.IMPLEMENTING and d.status.total_attempts == 4
    d.fail()
    assert d.phase == P.NEEDS_ATTENTION
    assert "maxTotalAttempts 4" in (d.status.message or "")


@pytest.mark.parametrize("reason", ["evicted", "oom-killed", "unschedulable", "timeout"])
def test_a_failed_pod_is_retried_with_a_new_attempt_of_the_same_stage(reason: str) -> None:
    d = Driver().to(P.PLAN_REVIEW)
    d.fail(reason)
    assert d.phase == P.PLAN_REVIEW and d.attempt == 2
    assert d.launched()[-1].name == "greet-plan-review-2"
    assert reason in (d.status.history[-1].message or "")


# -- budget --------------------------------------------------------------------------------


def test_usage_past_the_token_budget_cancels_the_live_stage_and_parks() -> None:
    d = Driver(factory=factory(budget={"maxTokensPerTask": 1000})).to(P.IMPLEMENTING)
    d.feed(UsageReported(usage=Usage(input_tokens=600, output_tokens=300)))
    assert d.phase == P.IMPLEMENTING
    decision = d.feed(UsageReported(usage=Usage(cache_read_tokens=100)))
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.BUDGET_EXHAUSTED
    assert CancelStage(Stage.IMPLEMENT, 1, "greet-implement-1") in decision.actions
    assert "maxTokensPerTask is 1000" in (d.status.message or "")


def test_a_result_that_exhausts_the_cost_budget_is_not_acted_on() -> None:
    d = Driver(factory=factory(budget={"maxCostUSDPerTask": 1.0})).to(P.PLANNING)
    d.feed(
        PlanProduced(
            stage=Stage.PLAN, attempt=1, plan=PlanSummary(summary="p"), usage=Usage(cost_usd=1.5)
        )
    )
    assert d.phase == P.NEEDS_ATTENTION and d.status.plan is None
    assert d.status.usage.cost_usd == 1.5
    assert not d.decisions[-1].started and d.decisions[-1].work is None


def test_retrying_without_raising_the_budget_stops_again_before_any_launch() -> None:
    d = Driver(factory=factory(budget={"maxTokensPerTask": 10})).to(P.PLANNING)
    d.feed(UsageReported(usage=Usage(output_tokens=50)))
    launches = len(d.launched())
    d.human("retry")
    d.ready()
    d.admit()
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.BUDGET_EXHAUSTED
    assert len(d.launched()) == launches


# -- stale, duplicate and misplaced observations ----------------------------------------------


def test_a_stale_result_from_an_earlier_attempt_is_ignored() -> None:
    d = Driver().to(P.PLAN_REVIEW)
    d.fail()
    before = d.status
    decision = d.feed(VerdictGiven(stage=Stage.PLAN_REVIEW, attempt=1, verdict=Verdict.APPROVE))
    assert decision.ignored and "stale" in decision.ignored
    assert d.status == before and not decision.actions


def test_a_duplicated_result_changes_nothing_the_second_time() -> None:
    d = Driver().to(P.PLANNING)
    result = PlanProduced(stage=Stage.PLAN, attempt=1, plan=PlanSummary(summary="p"))
    d.feed(result)
    after_first = d.status
    decision = d.feed(result)
    assert decision.ignored and d.status == after_first


def test_ci_for_another_head_is_ignored() -> None:
    d = Driver().to(P.CI)
    decision = d.feed(CIFinished(head_sha=sha(12345), state="success"))
    assert decision.ignored and d.phase == P.CI


def test_a_verdict_from_a_non_review_stage_is_ignored() -> None:
    d = Driver().to(P.PLANNING)
    decision = d.feed(VerdictGiven(stage=Stage.PLAN, attempt=1, verdict=Verdict.APPROVE))
    assert decision.ignored and d.phase == P.PLANNING


def test_the_pull_request_is_recorded_once() -> None:
    d = Driver().to(P.CI)
    d.feed(PullRequestOpened(number=7, url="https://example.test/pr/7"))
    assert d.status.pull_request is not None and d.status.pull_request.number == 7
    assert d.feed(PullRequestOpened(number=7, url="https://example.test/pr/7")).ignored


# -- freshness: merges need a review and CI of exactly what is merged --------------------------


def test_a_new_patch_needs_a_new_review_even_after_an_earlier_approve() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    d.merged(outcome="conflict", merged_sha=None)
    d.patch()
    d.ci()
    assert d.phase == P.CODE_REVIEW, "revision 2 must be reviewed by a fresh session"
    assert d.status.patch_revision == 2


def test_a_moved_base_is_re_verified_by_ci_but_keeps_the_review_of_the_same_revision() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    d.merged(outcome="base-moved", merged_sha=None, new_head_sha=sha(77))
    assert d.phase == P.CI and d.status.head_sha == sha(77) and d.status.ci is None
    d.ci()
    assert d.phase == P.MERGING
    d.grant()
    d.merged()
    assert d.phase == P.MERGED and d.status.ci is not None and d.status.ci.head_sha == sha(77)


def test_a_base_that_keeps_moving_is_re_verified_without_spending_retries() -> None:
    # Other tasks merging first is nobody's failure: waiting in a busy merge queue must not
    # exhaust the task's retries (it did: the third re-verification parked the task).
    d = Driver(factory=factory(retries={"perStage": 0, "maxTotalAttempts": 6})).to(P.MERGING)
    for moved in range(10):
        d.grant()
        d.merged(outcome="base-moved", merged_sha=None, new_head_sha=sha(100 + moved))
        assert d.phase == P.CI, d.status.message
        assert d.status.attempt == moved + 2, "a new CI attempt (and pod name) each time"
        d.ci()
        assert d.phase == P.MERGING, d.status.message
    d.grant()
    d.merged()
    assert d.phase == P.MERGED


def test_re_verifications_still_stop_at_the_budget() -> None:
    d = Driver(factory=factory(budget={"maxTokensPerTask": 1000})).to(P.MERGING)
    d.grant()
    d.status.usage = d.status.usage.model_copy(update={"input_tokens": 1000})
    d.merged(outcome="base-moved", merged_sha=None, new_head_sha=sha(100))
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.BUDGET_EXHAUSTED


def test_merging_a_head_other_than_the_verified_one_parks_loudly() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    d.merged(head_sha=sha(999))
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.MERGE_UNVERIFIED
    assert "not the verified head" in (d.status.message or "")


def test_a_merge_a_forge_rule_refuses_parks_with_the_rule_and_sends_no_implementer() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    said = "GitHub's branch protection: At least 1 approving review is required"
    d.merged(outcome="blocked", merged_sha=None, message=said)
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.MERGE_BLOCKED
    assert d.status.message == said
    assert d.status.attempts.implement == 1, "no conflict to resolve"


def test_a_merge_in_the_forges_own_queue_waits_there_and_a_removal_tries_again() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    said = "in GitHub's merge queue for main: position 2"
    queued = d.merged(outcome="queued", merged_sha=None, message=said)
    assert not queued.transitions and not queued.ignored, "no transition, a status write"
    assert d.phase == P.MERGING and d.status.message == said
    assert d.status.queue is not None and d.status.queue.on_forge == said
    assert d.merged(outcome="queued", merged_sha=None, message=said).ignored, "nothing new"
    d.merged(outcome="error", merged_sha=None, message="GitHub's merge queue removed PR #4")
    assert d.phase == P.MERGING and d.status.reason == T.STAGE_RETRIED
    assert d.status.queue is not None and d.status.queue.on_forge is None
    assert d.status.attempts.merge == 1, "counted: the next attempt queues it again"
    d.grant()
    d.merged()
    assert d.phase == P.MERGED


def test_a_base_moved_that_left_the_head_where_it_was_parks_instead_of_looping() -> None:
    d = Driver().to(P.MERGING)
    d.grant()
    d.merged(outcome="base-moved", merged_sha=None, new_head_sha=d.status.head_sha)
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.MERGE_BLOCKED
    assert "left the head at" in (d.status.message or "")


def test_forge_checks_are_awaited_on_the_exact_head_instead_of_a_ci_pod() -> None:
    spec = factory(
        repository={"forge": "github", "credentials": {"token": {"secretName": "gh"}}},
        ci={"source": "github-checks", "requiredChecks": ["lint", "test"]},
    )
    d = Driver(factory=spec).to(P.CI)
    wait = [w for w in d.started() if isinstance(w, AwaitChecks)]
    assert wait == [AwaitChecks(sha(1), ("lint", "test"), 3600, 1)]
    assert not [a for a in d.launched() if a.stage == Stage.CI]


# -- escalation and people -----------------------------------------------------------------------


def test_a_require_approval_rule_waits_after_review_until_a_listed_approver_approves() -> None:
    d = Driver(factory=factory(escalation={"approvers": ["alice"]})).to(P.IMPLEMENTING)
    d.patch(patch(("migrations/0002_add.sql", ["ALTER TABLE t ADD c int;"])))
    assert d.phase == P.CI
    d.ci()
    d.verdict(Verdict.APPROVE)
    assert d.phase == P.AWAITING_APPROVAL
    assert "migrations" in (d.status.message or "") and "approved-by" in (d.status.message or "")
    refused = d.human("approve", by="mallory")
    assert refused.ignored == "mallory is not in escalation.approvers (alice)"
    d.human("approve", by="@Alice")  # logins are case-insensitive, as on GitHub
    assert d.phase == P.MERGING and d.status.escalation is not None
    assert d.status.escalation.approved_by == "@Alice"
    d.grant()
    d.merged()
    assert d.phase == P.MERGED


def test_a_park_rule_stops_before_ci_and_an_approval_resumes_at_ci() -> None:
    d = Driver().to(P.IMPLEMENTING)
    decision = d.patch(patch(("src/db.py", ["cursor.execute('DROP TABLE users')"])))
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.ESCALATION_PARKED
    assert PushBranch("factory/greet", sha(1)) in decision.actions, "the PR shows what parked"
    record = d.status.escalation
    assert record is not None and record.matches[0].rule == "drop-table"
    assert record.matches[0].line == 1 and record.matches[0].file == "src/db.py"
    d.human("approve", by="bob")
    assert d.phase == P.QUEUED, "parking released the slot and lock: wait for them again"
    d.admit()
    assert d.phase == P.CI and d.status.stage == Stage.CI
    d.ci()
    d.verdict(Verdict.APPROVE)
    assert d.phase == P.MERGING, "the revision was approved once already"


WEAKENED = Proof(
    verdict="proven",
    weakenings=[WeakenedTest(file="tests/test_cart.py", test="test_total", kind="constant",
                             message="test_total now asserts a constant", line=4)],
)  # fmt: skip


def test_a_weakened_test_goes_back_once_then_waits_for_a_person_after_review() -> None:
    d = Driver(factory=factory(escalation={"approvers": ["alice"]})).to(P.CI)
    d.ci(proof=WEAKENED)
    assert d.phase == P.IMPLEMENTING and d.status.reason == T.CI_FAILED
    assert "test_total now asserts a constant" in (d.status.feedback or "")
    assert d.status.ci is not None and d.status.ci.state == "failure"
    assert [c.name for c in d.status.ci.failed_checks] == ["test-weakening"]
    d.patch()
    d.ci(proof=WEAKENED)  # still flagged: the reviewer and then a person weigh it
    assert d.phase == P.CODE_REVIEW
    record = d.status.escalation
    assert record is not None and record.rules == ["test-weakening"]
    assert record.matches[0].file == "tests/test_cart.py" and record.matches[0].line == 4
    d.verdict(Verdict.APPROVE)
    assert d.phase == P.AWAITING_APPROVAL
    assert "test_total now asserts a constant" in (d.status.message or "")
    d.human("approve", by="alice")
    assert d.phase == P.MERGING


def test_require_approval_weakening_is_not_sent_back_and_warn_only_records_it() -> None:
    d = Driver(factory=factory(guardrails={"testWeakening": "requireApproval"})).to(P.CI)
    d.ci(proof=WEAKENED)
    assert d.phase == P.CODE_REVIEW and d.status.ci is not None
    assert d.status.ci.state == "success"
    d.verdict(Verdict.APPROVE)
    assert d.phase == P.AWAITING_APPROVAL
    warned = Driver(factory=factory(guardrails={"testWeakening": "warn"})).to(P.CI)
    warned.ci(proof=WEAKENED)
    warned.verdict(Verdict.APPROVE)
    assert warned.phase == P.MERGING
    assert warned.status.ci is not None and warned.status.ci.proof == WEAKENED


def test_an_approval_given_before_ci_found_a_weakening_does_not_cover_it() -> None:
    d = Driver(factory=factory(guardrails={"testWeakening": "requireApproval"}))
    d.to(P.IMPLEMENTING)
    d.patch(patch(("src/db.py", ["cursor.execute('DROP TABLE users')"])))
    d.human("approve", by="bob")
    d.admit()
    d.ci(proof=WEAKENED)
    d.verdict(Verdict.APPROVE)
    assert d.phase == P.AWAITING_APPROVAL, "bob approved the drop, not the weakened test"


def test_a_re_verification_after_the_base_moved_keeps_the_approval_of_a_weakening() -> None:
    d = Driver(factory=factory(guardrails={"testWeakening": "requireApproval"})).to(P.CI)
    d.ci(proof=WEAKENED)
    d.verdict(Verdict.APPROVE)
    d.human("approve", by="alice")
    d.grant()
    d.merged(outcome="base-moved", new_head_sha=sha(0xF00D), merged_sha=None)
    assert d.phase == P.CI
    d.ci(proof=WEAKENED)
    assert d.phase == P.MERGING, "the same revision, already approved"


# -- the merge queue ---------------------------------------------------------------------


def test_a_task_built_on_the_ones_ahead_is_verified_again_without_spending_retries() -> None:
    d = Driver(factory=factory(retries={"perStage": 1})).to(P.MERGING)
    assert d.status.queue is not None and d.status.queue.entered == d.clock
    entered = d.status.queue.entered
    decision = d.rebuilt(head=0x51, onto=0x50, ahead=("first",))
    assert d.phase == P.CI and d.status.head_sha == sha(0x51)
    assert PushBranch("factory/greet", sha(0x51)) in decision.actions
    assert d.status.queue.onto == sha(0x50) and d.status.queue.ahead == ["first"]
    assert "on top of first in the merge queue" in (d.status.message or "")
    d.ci()
    assert d.phase == P.MERGING, "the review of this revision stands"
    assert d.status.queue.entered == entered, "it keeps its place"
    d.rebuilt(head=0x52, onto=0x53)  # the one ahead was built again: so is this one
    assert d.phase == P.CI, "not counted against perStage 1"
    stale = d.feed(QueueRebased(from_sha=sha(0x51), head_sha=sha(0x54)))
    assert stale.ignored == f"built from {sha(0x51)[:12]}, not the current head"


def test_a_failure_on_top_of_others_is_held_until_they_merge_then_goes_back() -> None:
    d = Driver().to(P.MERGING)
    d.rebuilt()
    d.ci("failure", ["test"])
    assert d.phase == P.CI and d.status.attempt == 0 and d.status.reason == T.CI_HELD
    assert d.decisions[-1].work is None, "nothing runs while it is held"
    assert "held until they merge" in (d.status.message or "")
    d.feed(QueueSettled())
    assert d.phase == P.IMPLEMENTING and d.status.queue is None
    assert "- test:\nboom" in (d.status.feedback or "")


def test_a_task_in_a_batch_merges_on_the_batch_s_green_run_and_nothing_else() -> None:
    d = Driver(factory=factory(merge={"batchSize": 4})).to(P.CI)
    d.ci()
    d.verdict(Verdict.APPROVE)
    d.rebuilt(covered=True)
    assert d.phase == P.MERGING and d.status.ci is None and d.status.queue is not None
    assert d.status.queue.covered and d.decisions[-1].work is None, "no run of its own"
    assert "the CI run of the last task of its batch verifies it" in (d.status.message or "")
    stale = d.feed(QueueVerified(head_sha=sha(0x52), by="last"))
    assert stale.ignored == f"last's run carried {sha(0x52)[:12]}, not the current head"
    d.verified(by="t04")
    assert d.status.ci is not None and d.status.ci.verified_by == "t04"
    assert d.status.ci.head_sha == sha(0x51) and d.status.ci.state == "success"
    assert d.verified().ignored == "already verified"
    d.grant()
    d.merged()
    assert d.phase == P.MERGED, "its batch's run is its verification"


def test_a_task_of_a_red_batch_is_split_off_and_verified_on_its_own_run() -> None:
    d = Driver(factory=factory(merge={"batchSize": 4})).to(P.MERGING)
    d.rebuilt(covered=True)
    assert d.split(failed="t07").transitions == [(P.MERGING, T.BATCH_SPLIT, P.CI)]
    assert d.status.queue is not None and not d.status.queue.covered
    assert "the batch t07 ended failed CI" in (d.status.message or "")
    assert d.split().ignored, "only a task waiting for its batch is split"
    d.ci("failure", ["test"])
    assert d.status.reason == T.CI_HELD, "on top of those ahead, it is held like any other"
    uncarried = Driver(factory=factory(merge={"batchSize": 4})).to(P.MERGING)
    uncarried.rebuilt(covered=True)
    uncarried.split(failed=None)
    assert "no task behind it in the merge queue carries it" in (uncarried.status.message or "")


def test_a_conflict_with_the_one_ahead_waits_and_with_the_base_goes_back() -> None:
    d = Driver().to(P.MERGING)
    d.conflict(onto=0x50, ahead=("first",))
    assert d.phase == P.MERGING and d.status.queue is not None
    assert d.status.queue.conflict == sha(0x50)
    assert "conflicts with first ahead in the merge queue" in (d.status.message or "")
    d.conflict(onto=None)
    assert d.phase == P.IMPLEMENTING and d.status.reason == T.MERGE_CONFLICT


def test_leaving_the_queue_forgets_the_place_and_coming_back_queues_anew() -> None:
    d = Driver().to(P.MERGING)
    first = d.status.queue
    d.grant()
    d.merged(outcome="conflict", merged_sha=None)
    assert d.phase == P.IMPLEMENTING and d.status.queue is None
    d.patch()
    d.ci()
    d.clock += timedelta(minutes=3)
    d.verdict(Verdict.APPROVE)
    assert d.status.queue is not None and first is not None
    assert d.status.queue.entered > first.entered


def test_approve_with_nothing_waiting_is_ignored() -> None:
    d = Driver().to(P.CI)
    d.ci("timeout")
    decision = d.human("approve")
    assert decision.ignored and d.phase == P.NEEDS_ATTENTION
    retried = Driver().to(P.IMPLEMENTING).human("retry")
    assert retried.ignored == (
        "retry applies to Cancelled, Failed, NeedsAttention, not Implementing"
    ), "phases as users write them, not Python's reprs"


def test_cancel_stops_the_live_pod() -> None:
    d = Driver().to(P.IMPLEMENTING)
    decision = d.human("cancel", by="carol")
    assert d.phase == P.CANCELLED
    assert CancelStage(Stage.IMPLEMENT, 1, "greet-implement-1") in decision.actions
    assert d.human("cancel").ignored


def test_a_retry_starts_a_new_round_with_fresh_limits_and_unique_pod_names() -> None:
    d = Driver(factory=factory(retries={"perStage": 0})).to(P.PLAN_REVIEW)
    d.fail()
    assert d.phase == P.NEEDS_ATTENTION
    d.human("retry", by="dave")
    assert d.phase == P.PENDING and d.status.round == 2
    d.ready()
    d.admit()
    assert d.phase == P.PLAN_REVIEW and d.attempt == 2
    assert d.launched()[-1].name == "greet-plan-review-2"


def test_retry_is_ignored_outside_terminal_phases() -> None:
    d = Driver().to(P.IMPLEMENTING)
    assert d.human("retry").ignored


@pytest.mark.parametrize("phase", sorted(ACTIVE))
def test_an_invalid_spec_fails_the_task_from_any_active_phase(phase: Phase) -> None:
    d = Driver()
    if phase == P.AWAITING_APPROVAL:
        _to_awaiting(d)
    else:
        d.to(phase)
    d.feed(SpecInvalid(message="spec.factoryRef: factory 'app' not found; create it"))
    assert d.phase == P.FAILED
    assert d.status.message == "spec.factoryRef: factory 'app' not found; create it"


def test_history_is_bounded_and_counts_what_it_dropped() -> None:
    d = Driver(factory=factory(retries={"perStage": 20, "maxTotalAttempts": 200})).to(P.PLANNING)

    def taken() -> int:
        return sum(len(x.transitions) for x in d.decisions)

    while taken() < 70:  # planner pods keep failing; a person keeps retrying
        if d.phase == P.NEEDS_ATTENTION:
            d.human("retry")
            d.ready()
            d.admit()
        else:
            d.fail()
    assert len(d.status.history) == 50
    assert d.status.history_dropped == taken() - 50
    assert d.status.history[-1].time == d.clock, "the newest entries are the ones kept"


def test_condition_transition_time_changes_only_when_the_status_flips() -> None:
    d = Driver().to(P.PLANNING)
    first = {c.type: c for c in d.status.conditions}["Progressing"]
    d.plan()
    again = {c.type: c for c in d.status.conditions}["Progressing"]
    assert again.status == "True" and again.last_transition_time == first.last_transition_time
    assert again.reason == "PlanProduced"


def test_clean_patch_fixture_is_in_scope() -> None:
    # Guards the builders: the default patch must pass the default guardrails.
    from agentfactory.core.policies.guardrails import check_guardrails

    assert check_guardrails(CLEAN, factory().guardrails, ["src/**"]) == []


def test_a_set_up_failure_parks_at_once_and_a_retry_resumes_the_stage_uncounted() -> None:
    d = Driver().to(P.IMPLEMENTING)
    d.feed(StageFailed(stage=Stage.IMPLEMENT, attempt=d.attempt, reason="setup",
                       message="api-key: the model API refused the key (401 ...)"))  # fmt: skip
    assert d.phase == P.NEEDS_ATTENTION and d.status.reason == T.SETUP_FAILED
    message = d.status.message or ""
    assert message.startswith("implement cannot run: api-key: the model API refused the key")
    assert "not the task: fix it, then retry with: kubectl annotate agenttask greet" in message
    d.human("retry")
    d.ready()
    d.admit()
    assert d.phase == P.IMPLEMENTING, "the retry resumes where the set-up stopped it"
