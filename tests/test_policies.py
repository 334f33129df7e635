"""Guardrails (protected paths, scope, size, test weakening) and escalation rules."""

from __future__ import annotations

import pytest
from testbed.builders import patch

from agentfactory.core.diff import ChangedLine, FileChange, Patch
from agentfactory.core.factory import EscalationRule, Guardrails
from agentfactory.core.policies.escalation import evaluate_escalation
from agentfactory.core.policies.guardrails import check_guardrails

SCOPE = ["src/**", "tests/**"]


def rules_of(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.rule for v in violations]


def test_a_clean_patch_in_scope_passes() -> None:
    assert check_guardrails(patch(("src/a.py", ["x = 1"])), Guardrails(), SCOPE) == []


def test_an_empty_patch_is_rejected() -> None:
    assert rules_of(check_guardrails(Patch(), Guardrails(), SCOPE)) == ["empty-patch"]


def test_protected_paths_are_refused_even_when_in_scope() -> None:
    found = check_guardrails(
        patch((".github/workflows/ci.yml", ["on: push"])), Guardrails(), ["**"]
    )
    assert rules_of(found) == ["protected-path"]
    assert ".github/workflows/**" in found[0].message


def test_a_rename_out_of_a_protected_path_is_refused() -> None:
    change = FileChange(path="src/ci.yml", old_path=".github/workflows/ci.yml", status="renamed")
    found = check_guardrails(Patch(files=[change]), Guardrails(), ["**"])
    assert rules_of(found) == ["protected-path"]


def test_files_outside_the_scope_are_refused() -> None:
    found = check_guardrails(patch(("setup.py", ["x"])), Guardrails(), SCOPE)
    assert rules_of(found) == ["out-of-scope"] and found[0].file == "setup.py"


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [("src/passwd", "/etc/passwd", False), ("src/up", "../../outside", False),
     ("src/config", "../.git/config", False), ("src/sibling", "app.py", True),
     ("src/lib/up", "../app.py", True)],
)  # fmt: skip
def test_a_symlink_may_point_only_inside_the_repository(
    path: str, target: str, allowed: bool
) -> None:
    link = FileChange(path=path, status="added", symlink=target,
                      added=[ChangedLine(number=1, text=target)])  # fmt: skip
    found = check_guardrails(Patch(files=[link]), Guardrails(), SCOPE)
    if allowed:
        assert found == []
    else:
        assert rules_of(found) == ["symlink-out"], found
        assert found[0].file == path and repr(target) in found[0].message


def test_size_limits() -> None:
    many = patch(*[(f"src/f{i}.py", ["x"]) for i in range(4)])
    assert rules_of(check_guardrails(many, Guardrails(max_changed_files=3), SCOPE)) == [
        "max-changed-files"
    ]
    big = patch(("src/a.py", ["x"] * 6, ["y"] * 5))
    assert rules_of(check_guardrails(big, Guardrails(max_changed_lines=10), SCOPE)) == [
        "max-changed-lines"
    ]


WEAKENING = [
    pytest.param(
        FileChange(path="tests/test_a.py", status="deleted"), "deletes test file", id="deleted"
    ),
    pytest.param(
        patch(("tests/test_a.py", [], ["def test_refunds():", "    assert refund() == 3"])).files[
            0
        ],
        "removes test 'test_refunds'",
        id="removed-test-function",
    ),
    pytest.param(
        patch(("tests/test_a.py", ["    pass"], ["    assert total == 3"])).files[0],
        "removes 1 assertions",
        id="removed-assert",
    ),
    pytest.param(
        # reason: data, not a skip: a patch line the test-weakening guardrail must catch
        patch(("tests/test_a.py", ["@pytest.mark.skip(reason='flaky')"])).files[0],  # reason: data
        "adds a skip",
        id="pytest-skip",
    ),
    pytest.param(
        patch(("web/cart.test.ts", ["it.skip('totals', () => {"])).files[0],
        "adds a skip",
        id="jest-skip",
    ),
    pytest.param(
        patch(("pkg/cart_test.go", ['\tt.Skip("later")'])).files[0], "adds a skip", id="go-skip"
    ),
    pytest.param(
        patch(("web/cart.test.ts", [], ["test('totals', () => {", "  expect(t).toBe(3)"])).files[0],
        "removes test 'totals'",
        id="removed-js-test",
    ),
]


@pytest.mark.parametrize(("change", "message"), WEAKENING)
def test_test_weakening_is_caught(change: FileChange, message: str) -> None:
    found = check_guardrails(Patch(files=[change]), Guardrails(), ["**"])
    assert "test-weakening" in rules_of(found)
    assert any(message in v.message for v in found), [v.message for v in found]


def test_strengthening_or_renaming_tests_is_not_weakening() -> None:
    stronger = patch(
        ("tests/test_a.py", ["    assert a == 1", "    assert b == 2"], ["    assert a == 1"])
    )
    moved = patch(("tests/test_a.py", ["def test_x():", "    assert f()"], ["def test_x():"]))
    assert check_guardrails(stronger, Guardrails(), SCOPE) == []
    assert check_guardrails(moved, Guardrails(), SCOPE) == []


def test_test_weakening_is_allowed_when_the_factory_turns_the_guardrail_off() -> None:
    change = FileChange(path="tests/test_a.py", status="deleted")
    assert (
        check_guardrails(Patch(files=[change]), Guardrails(forbid_test_weakening=False), SCOPE)
        == []
    )


def test_skips_outside_test_files_are_not_test_weakening() -> None:
    outside_tests = patch(("src/a.py", ["pytest.skip('x')"]))  # reason: data, not a skip
    assert check_guardrails(outside_tests, Guardrails(), SCOPE) == []


RULES = [
    EscalationRule(name="migrations", paths=["migrations/**"]),
    EscalationRule(name="drop", content_patterns=[r"(?i)drop\s+table"], action="Park"),
]


def test_path_rules_name_the_file_and_content_rules_name_the_line() -> None:
    found = evaluate_escalation(
        RULES,
        patch(("migrations/0003.sql", ["ALTER TABLE a ADD b int;", "DROP TABLE old;"])),
    )
    assert [(m.rule, m.file, m.line, m.action) for m in found] == [
        ("migrations", "migrations/0003.sql", None, "RequireApproval"),
        ("drop", "migrations/0003.sql", 2, "Park"),
    ]
    assert found[1].text == "DROP TABLE old;"


def test_content_rules_ignore_removed_lines() -> None:
    assert evaluate_escalation(RULES, patch(("src/db.py", ["x = 1"], ["DROP TABLE t"]))) == []


def test_a_noisy_rule_never_hides_a_later_rule() -> None:
    noisy = EscalationRule(name="any-sql", content_patterns=["(?i)table"])
    found = evaluate_escalation(
        [noisy, RULES[1]],
        patch(("src/db.py", [f"create table t{i}" for i in range(30)] + ["drop table t"])),
    )
    assert {m.rule for m in found} == {"any-sql", "drop"}
    assert sum(1 for m in found if m.rule == "any-sql") == 10


def test_a_pattern_that_backtracks_on_agent_written_lines_gives_up_and_escalates() -> None:
    # `(a|aa)+$` against a long run of a's that then fails backtracks exponentially: unbounded,
    # this search would not end. Each search gives up after SEARCH_SECONDS and counts as a
    # match, at most MAX_MATCHES_PER_RULE times, so the rule ends and later rules still run.
    slow = EscalationRule(name="slow", content_patterns=[r"^x", r"(a|aa)+$"])
    crafted = ["a" * 60 + "!"] * 30
    found = evaluate_escalation([slow, RULES[1]],
                                patch(("src/gen.py", [*crafted, "drop table t"])))  # fmt: skip
    gave_up = [m for m in found if m.rule == "slow"]
    assert len(gave_up) == 10
    assert "contentPatterns[1] gave up after 0.5 s" in (gave_up[0].text or "")
    assert gave_up[0].text.startswith("a" * 60)  # type: ignore[union-attr]
    assert [(m.rule, m.line) for m in found if m.rule == "drop"] == [("drop", 31)]
