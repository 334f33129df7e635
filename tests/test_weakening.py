"""Weakened tests found by structure (`core.weakening`): a corpus of weakenings of one test
file, each caught with its kind, and a corpus of honest edits, none flagged. The guardrail
that counts lines passes the first four of the weakenings."""

from __future__ import annotations

import pytest

from agentfactory.core.diff import parse_unified_diff
from agentfactory.core.factory import Guardrails
from agentfactory.core.policies.guardrails import check_guardrails
from agentfactory.core.weakening import weakened

BASE = """import pytest
from shop.cart import cart_total, parse


def test_quantity():
    assert cart_total([(250, 2)]) == 500


def test_empty():
    assert cart_total([]) == 0


def test_bad_input():
    with pytest.raises(ValueError, match="quantity"):
        parse("x")


class TestCart:
    def test_many(self):
        total = cart_total([(1, 1), (2, 2)])
        assert total == 5
        assert total > 0
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


SKIP_MARKER = "@pytest.mark.skip(reason='flaky')\ndef test_empty"  # reason: corpus text under test
QUANTITY = "    assert cart_total([(250, 2)]) == 500\n"
WEAKENINGS = [
    pytest.param(edit(QUANTITY, "    assert True\n"), "constant", id="assert-true"),
    pytest.param(edit(QUANTITY, "    assert cart_total([(250, 2)]) is not None\n"), "looser",
                 id="is-not-none"),
    pytest.param(edit(QUANTITY, "    assert cart_total([(250, 2)]) == 250\n"),
                 "expected-changed", id="expected-bent-to-the-code"),
    pytest.param(edit(QUANTITY, "    return\n" + QUANTITY), "early-return", id="early-return"),
    pytest.param(edit("def test_empty", SKIP_MARKER), "skipped", id="skip-marker"),
    pytest.param(edit("    assert cart_total([]) == 0\n",
                      "    pytest.xfail('later')\n    assert cart_total([]) == 0\n"),
                 "skipped", id="xfail-call"),
    pytest.param(edit("def test_empty", "def check_empty"), "renamed-out", id="renamed-out"),
    pytest.param(edit("    assert cart_total([]) == 0\n", "    cart_total([])\n"),
                 "fewer-assertions", id="assertion-removed"),
    pytest.param(edit('pytest.raises(ValueError, match="quantity")', "pytest.raises(Exception)"),
                 "broadened", id="any-exception"),
    pytest.param(edit('pytest.raises(ValueError, match="quantity")', "pytest.raises(ValueError)"),
                 "broadened", id="message-unchecked"),
    pytest.param(edit(QUANTITY, "    try:\n    " + QUANTITY
                      + "    except AssertionError:\n        pass\n"), "swallowed",
                 id="failure-swallowed"),
    pytest.param(edit("def test_empty():\n    assert cart_total([]) == 0\n", ""), "removed",
                 id="test-deleted"),
    pytest.param(edit("        assert total == 5\n", "        assert total >= 0\n"), "looser",
                 id="exact-to-ordering"),
]  # fmt: skip


@pytest.mark.parametrize(("head", "kind"), WEAKENINGS)
def test_each_weakening_is_caught_with_its_kind(head: str, kind: str) -> None:
    found = weakened(BASE, head, code_changed=True)
    assert [w.kind for w in found] == [kind], found


# test_quantity and test_empty folded into one parametrized test.
PARAMETRIZED = edit(
    "def test_quantity():\n" + QUANTITY + "\n\ndef test_empty():\n    assert cart_total([]) == 0\n",
    '@pytest.mark.parametrize(("items", "total"), [([(250, 2)], 500), ([], 0)])\n'
    "def test_totals(items, total):\n    assert cart_total(items) == total\n",
)
HELPER = edit(QUANTITY, "    totals([(250, 2)], 500)\n").replace(
    "def test_quantity", "def totals(items, expected):\n    assert cart_total(items) == expected"
    "\n\n\ndef test_quantity")  # fmt: skip
HONEST = [
    pytest.param(BASE, id="unchanged"),
    pytest.param(edit("def test_quantity", "def test_quantity_is_multiplied"), id="renamed"),
    pytest.param(PARAMETRIZED, id="parametrized"),
    pytest.param(HELPER, id="helper-extracted"),
    pytest.param(edit("        assert total > 0\n", "        assert total == 5\n"), id="stronger"),
    pytest.param(BASE + "\n\ndef test_discount():\n    assert cart_total([(10, 1)]) == 10\n",
                 id="test-added"),
    pytest.param(edit('match="quantity"', 'match="quantity must be a number"'),
                 id="message-refined"),
    pytest.param(edit(QUANTITY, "    items = [(250, 2)]\n    assert cart_total(items) == 500\n"
                      "    assert cart_total(items * 2) == 1000\n"), id="more-assertions"),
    pytest.param(edit("assert cart_total([(250, 2)]) == 500", "assert cart_total( [ (250, 2) ] )"
                      " == (500)"), id="reformatted"),
]  # fmt: skip


@pytest.mark.parametrize("head", HONEST)
def test_honest_test_edits_are_not_flagged(head: str) -> None:
    assert weakened(BASE, head, code_changed=True) == []


def test_an_expected_value_corrected_alone_is_not_bent_to_the_code() -> None:
    # Only the test changes: fixing a wrong expectation is what the task may ask for.
    head = edit(QUANTITY, "    assert cart_total([(250, 2)]) == 501\n")
    assert weakened(BASE, head, code_changed=False) == []
    assert [w.kind for w in weakened(BASE, head, code_changed=True)] == ["expected-changed"]


def diff(head: str) -> str:
    """*BASE* to *head* as a unified git diff of tests/test_cart.py."""
    import difflib

    lines = difflib.unified_diff(BASE.splitlines(keepends=True), head.splitlines(keepends=True),
                                 "a/tests/test_cart.py", "b/tests/test_cart.py")  # fmt: skip
    return "diff --git a/tests/test_cart.py b/tests/test_cart.py\n" + "".join(lines)


@pytest.mark.parametrize("case", range(4), ids=["assert-true", "is-not-none", "== 250", "return"])
def test_the_line_counting_guardrail_misses_what_the_structure_catches(case: int) -> None:
    head = WEAKENINGS[case].values[0]
    patch = parse_unified_diff(diff(head))
    found = check_guardrails(patch, Guardrails(), ["tests/**"])
    assert [v for v in found if v.rule == "test-weakening"] == [], "counting lines misses it"
    assert weakened(BASE, head, code_changed=True), "the structure does not"
