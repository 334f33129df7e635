"""Which AgentTask a labelled GitHub issue becomes, and what an issue that cannot be one says."""

from __future__ import annotations

from pathlib import Path

import yaml

from agentfactory.core.intake import Issue, intake_problem, sections, task_from_issue, task_name
from agentfactory.core.task import AgentTask

DOCS = Path(__file__).parent.parent / "docs"

FORM = """### Goal

Discount codes apply once per order.

### Acceptance criteria

- [ ] A second code on the same order is refused
- [x] The refusal names the code
1. Totals never go below zero

### Non-goals

_No response_

### Scope

- `shop/pricing.py`
- tests/test_pricing.py

### Depends on

- fix-cart
"""


def test_an_issue_form_becomes_a_task_of_its_factory() -> None:
    issue = Issue(12, "Discounts stack", FORM, "https://github.com/acme/shop/issues/12")
    doc, problems = task_from_issue(issue, factory="shop", namespace="team")
    assert problems == [] and doc is not None
    task = AgentTask.model_validate(doc)
    assert (task.metadata.name, doc["metadata"]["namespace"]) == ("shop-issue-12", "team")
    assert task.spec.goal == "Discount codes apply once per order."
    assert task.spec.acceptance_criteria == [
        "A second code on the same order is refused", "The refusal names the code",
        "Totals never go below zero"]  # fmt: skip
    assert task.spec.non_goals == [], "an empty optional field of the form"
    assert task.spec.scope.paths == ["shop/pricing.py", "tests/test_pricing.py"]
    assert task.spec.depends_on == ["fix-cart"]
    assert task.spec.source is not None and task.spec.source.github_issue is not None
    assert task.spec.source.github_issue.number == 12


def test_without_a_goal_section_the_title_is_the_goal() -> None:
    body = "## Acceptance criteria:\n* it works\n\n## Scope\n* shop/**\n"
    doc, _ = task_from_issue(Issue(3, "Cart counts quantities", body, "u"), factory="shop",
                             namespace="team")  # fmt: skip
    assert doc is not None and doc["spec"]["goal"] == "Cart counts quantities"
    assert sections("# Unrelated\n- x\n") == {}, "other headings are not sections"


def test_an_issue_that_is_not_a_task_yet_says_which_field_and_how() -> None:
    issue = Issue(4, "Make it better", "Please make the shop faster.", "u")
    doc, problems = task_from_issue(issue, factory="shop", namespace="team")
    assert doc is None
    assert any(p.startswith("spec.acceptanceCriteria") for p in problems), problems
    assert any(p.startswith("spec.scope.paths") for p in problems), problems
    text = intake_problem(issue, problems)
    assert "cannot make a task of #4 yet" in text and "`### Acceptance criteria`" in text


def test_task_names_fit_in_a_label() -> None:
    name = task_name("a" * 60, 123456)
    assert len(name) == 63 and name.endswith("-issue-123456")
    assert task_name("shop", 7) == "shop-issue-7"


def test_the_example_issue_form_renders_to_a_body_the_intake_reads() -> None:
    form = yaml.safe_load((DOCS / "github-issue-form.yml").read_text())
    answers = {"goal": "Webhooks retry with backoff.", "acceptance": "- a 503 is retried",
               "scope": "- `src/webhooks/**`", "non-goals": "", "context": "",
               "depends-on": "add-signing"}  # fmt: skip
    # As GitHub renders a submitted form: each field's label as a heading, then the answer.
    body = "\n\n".join(
        f"### {field['attributes']['label']}\n\n{answers[field['id']] or '_No response_'}"
        for field in form["body"]
    )
    doc, problems = task_from_issue(Issue(9, "[task] retries", body, "u"), factory="webhooks",
                                    namespace="team")  # fmt: skip
    assert problems == [] and doc is not None
    assert doc["spec"]["scope"]["paths"] == ["src/webhooks/**"]
    assert doc["spec"]["dependsOn"] == ["add-signing"]
    assert "nonGoals" not in doc["spec"]
