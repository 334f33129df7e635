"""The GitHub CI gate, pure: which reports make the exact head green, red, or timed out."""

from __future__ import annotations

from datetime import timedelta

from agentfactory.core.github import ForgeCheck, check_run_state, ci_verdict, status_state

HEAD = "a" * 40
HOUR = timedelta(hours=1)


def verdict(checks: list[ForgeCheck], waited: timedelta = timedelta(0)) -> object:
    return ci_verdict(HEAD, ["test", "lint"], checks, waited=waited, timeout=HOUR)


def test_green_only_when_every_required_check_succeeded() -> None:
    assert verdict([ForgeCheck("test", "success")]) is None, "lint has not reported"
    both = verdict([ForgeCheck("test", "success"), ForgeCheck("lint", "success"),
                    ForgeCheck("docs", "failure")])  # fmt: skip
    assert both is not None and both.state == "success", "checks not required do not gate"


def test_red_as_soon_as_a_required_check_fails_with_its_summary() -> None:
    red = verdict([ForgeCheck("test", "failure", "2 failed: test_cart"),
                   ForgeCheck("lint", "pending")])  # fmt: skip
    assert red is not None and red.state == "failure"
    assert [(f.name, f.summary) for f in red.failed_checks] == [("test", "2 failed: test_cart")]
    assert red.head_sha == HEAD


def test_a_timeout_names_what_never_reported() -> None:
    late = verdict([ForgeCheck("test", "success")], waited=HOUR)
    assert late is not None and late.state == "timeout"
    assert [f.name for f in late.failed_checks] == ["lint"]
    assert "ci.timeoutSeconds (3600 s)" in late.failed_checks[0].summary


def test_a_name_reported_as_check_run_and_status_needs_both() -> None:
    mixed = verdict([ForgeCheck("test", "success"), ForgeCheck("test", "failure"),
                     ForgeCheck("lint", "success")])  # fmt: skip
    assert mixed is not None and mixed.state == "failure"


def test_check_run_and_status_states() -> None:
    assert check_run_state("in_progress", None) == "pending"
    assert check_run_state("completed", "neutral") == "success"
    assert check_run_state("completed", "timed_out") == "failure"
    assert status_state("error") == "failure" and status_state("pending") == "pending"


def test_the_pr_carries_the_plan_the_last_review_and_a_red_ci() -> None:
    from agentfactory.core.github import pr_comments
    from agentfactory.core.task import AgentTaskStatus

    status = AgentTaskStatus.model_validate({
        "plan": {"summary": "Multiply by quantity.", "steps": ["edit cart.py", "test"]},
        "lastReview": {"stage": "codeReview", "attempt": 2, "verdict": "REQUEST_CHANGES",
                       "findings": [{"file": "shop/cart.py", "line": 3, "message": "off by one"}]},
        "ci": {"state": "failure", "headSHA": HEAD,
               "failedChecks": [{"name": "test", "summary": "1 failed"}]},
    })  # fmt: skip
    comments = dict(pr_comments(status))
    assert list(comments) == ["plan", "review-code-review-2", f"ci-{HEAD[:12]}"]
    assert "2. test" in comments["plan"]
    assert "**major** `shop/cart.py`:3 off by one" in comments["review-code-review-2"]
    assert "`test`: 1 failed" in comments[f"ci-{HEAD[:12]}"]
    green = status.model_copy(update={"ci": None, "plan": None, "last_review": None})
    assert pr_comments(green) == []


def test_the_pr_carries_the_proof_of_the_fix_with_each_test_and_each_weakening() -> None:
    from agentfactory.core.github import pr_comments
    from agentfactory.core.task import AgentTaskStatus

    status = AgentTaskStatus.model_validate({
        "ci": {"state": "success", "headSHA": HEAD, "proof": {
            "verdict": "proven", "required": True, "message": "1 tests fail on the base",
            "baseSeconds": 0.41, "headSeconds": 0.38,
            "tests": [{"test": "tests/test_cart.py::test_qty", "base": "failed",
                       "head": "passed"}],
            "weakenings": [{"file": "tests/test_cart.py", "test": "test_total",
                            "kind": "constant", "message": "test_total asserts a constant",
                            "line": 7}]}},
    })  # fmt: skip
    text = dict(pr_comments(status))[f"proof-{HEAD[:12]}"]
    assert text.splitlines()[0] == (
        f"**Tests that prove the fix on {HEAD[:12]}: proven (required): 1 tests fail on the base**"
    )
    assert "- `tests/test_cart.py::test_qty`: failed on the base, passed on the head" in text
    assert "- ran 0.4 s on the base and 0.4 s on the head" in text
    assert "- weakened `tests/test_cart.py` test_total (line 7): test_total asserts a" in text


def test_an_escalation_waiting_for_a_person_mentions_who_should_look() -> None:
    from agentfactory.core.github import pr_comments
    from agentfactory.core.task import AgentTaskStatus

    status = AgentTaskStatus.model_validate({
        "phase": "AwaitingApproval",
        "escalation": {"revision": 2, "rules": ["migrations"], "reason": "a schema change",
                       "matches": [{"rule": "migrations", "action": "RequireApproval",
                                    "file": "migrations/0002.sql"}]},
    })  # fmt: skip
    comments = dict(pr_comments(status, ["alice", "@acme/dba"], ["alice"]))
    text = comments["escalation-2"]
    assert text.startswith("@alice @acme/dba escalation rules migrations need a person")
    assert "`migrations/0002.sql` (migrations)" in text
    assert "approving review of this head by one of alice" in text
    merged = AgentTaskStatus.model_validate({**status.model_dump(by_alias=True), "phase": "Merged"})
    assert "escalation-2" not in dict(pr_comments(merged)), "only while it waits"


def test_a_parked_escalation_and_a_manual_merge_policy_ask_for_a_person_too() -> None:
    from agentfactory.core.github import pr_comments
    from agentfactory.core.task import AgentTaskStatus

    parked = AgentTaskStatus.model_validate({
        "phase": "NeedsAttention", "reason": "EscalationParked",
        "escalation": {"revision": 1, "rules": ["secrets"], "reason": "a key",
                       "matches": [{"rule": "secrets", "action": "Park", "file": "k.pem"}]},
    })  # fmt: skip
    assert parked.awaits_approval
    assert "escalation rules secrets need a person" in dict(pr_comments(parked))["escalation-1"]
    stuck = parked.model_copy(update={"reason": "RetriesExhausted"})
    assert not stuck.awaits_approval, "an approval does not fix exhausted retries"
    assert pr_comments(stuck) == []
    manual = AgentTaskStatus.model_validate(
        {"phase": "AwaitingApproval", "escalation": {"revision": 1}}
    )
    text = dict(pr_comments(manual, ["alice"]))["escalation-1"]
    assert text.startswith("@alice merge.auto is false: every change waits for a person")


def test_the_pr_body_is_the_contract_and_closes_the_issue_it_came_from() -> None:
    from agentfactory.core.github import pull_request_body
    from agentfactory.core.task import AgentTaskSpec

    spec = AgentTaskSpec.model_validate({
        "factoryRef": "shop", "goal": "Discounts apply once.", "acceptanceCriteria": ["refused"],
        "nonGoals": ["no new UI"], "scope": {"paths": ["shop/pricing.py"]},
    })  # fmt: skip
    body = pull_request_body("discounts", spec)
    assert body.startswith("**AgentTask `discounts`**\n\nDiscounts apply once.")
    assert "- refused" in body and "- no new UI" in body and "- `shop/pricing.py`" in body
    assert "Closes" not in body
    issued = AgentTaskSpec.model_validate(
        {**spec.model_dump(by_alias=True), "source": {"githubIssue": {"number": 12}}}
    )
    assert pull_request_body("discounts", issued).endswith("\n\nCloses #12")
