"""GitHub issue intake, as far as the core knows it: which AgentTask an issue becomes.

An issue opened from the repository's template (or written by hand with the same headings)
has sections `Goal`, `Acceptance criteria`, `Scope`, and optionally `Non-goals`, `Context`
and `Depends on`; list items (`- x`, `* x`, `1. x`, `- [ ] x`) are entries. The task is named
after the factory and the issue number, so creating it twice finds the first one. An issue
that does not make a valid task gets the model's own messages, so the person who filed it
can fix the sections. Pure; the worker reads issues through the forge and creates tasks.

The intake label is the trust gate: on GitHub only people with triage access or more can
label issues, so text from anyone else never becomes a task by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentfactory import API_VERSION
from agentfactory.core.explain import explain
from agentfactory.core.names import MAX_NAME_LENGTH
from agentfactory.core.task import AgentTask

#: The label the operator puts on an issue it made a task of (so it is taken once).
TAKEN_LABEL = "agentfactory:task"
#: Section headings (lowercased) -> the spec field they fill.
SECTIONS = {
    "goal": "goal",
    "acceptance criteria": "acceptanceCriteria",
    "non-goals": "nonGoals",
    "non goals": "nonGoals",
    "scope": "scope",
    "context": "context",
    "depends on": "dependsOn",
}
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s+)?(?P<text>.+?)\s*$")
#: What GitHub issue forms write for an optional field left empty.
_NO_RESPONSE = "_no response_"


@dataclass(frozen=True)
class Issue:
    """An open issue as the forge reports it."""

    number: int
    title: str
    body: str
    url: str


def task_name(factory: str, number: int) -> str:
    """`<factory>-issue-<number>`, the factory's part shortened to fit a name."""
    suffix = f"-issue-{number}"
    return f"{factory[: MAX_NAME_LENGTH - len(suffix)].rstrip('-')}{suffix}"


def sections(body: str) -> dict[str, list[str]]:
    """The known sections of *body*, each as its list items (or its non-empty lines)."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in body.replace("\r\n", "\n").split("\n"):
        heading = _HEADING.match(line)
        if heading:
            current = SECTIONS.get(heading["title"].strip().rstrip(":").lower())
            if current is not None:
                found.setdefault(current, [])
            continue
        text = line.strip()
        if current is None or not text or text.lower() == _NO_RESPONSE:
            continue
        item = _ITEM.match(line)
        found[current].append(item["text"] if item else text)
    return found


def task_from_issue(
    issue: Issue, *, factory: str, namespace: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """The AgentTask *issue* asks for, as a manifest, or None and the problems to fix."""
    parts = sections(issue.body)
    spec: dict[str, Any] = {
        "factoryRef": factory,
        "goal": " ".join(parts.get("goal") or [issue.title]),
        "acceptanceCriteria": parts.get("acceptanceCriteria", []),
        "scope": {"paths": [_unquote(p) for p in parts.get("scope", [])]},
        "source": {"githubIssue": {"number": issue.number, "url": issue.url}},
    }
    if parts.get("nonGoals"):
        spec["nonGoals"] = parts["nonGoals"]
    if parts.get("context"):
        spec["context"] = {"files": [_unquote(p) for p in parts["context"]]}
    if parts.get("dependsOn"):
        spec["dependsOn"] = [_unquote(d) for d in parts["dependsOn"]]
    doc = {
        "apiVersion": API_VERSION,
        "kind": "AgentTask",
        "metadata": {
            "name": task_name(factory, issue.number),
            "namespace": namespace,
            "labels": {
                "agentfactory.dev/factory": factory,
                "agentfactory.dev/source": "github-issue",
            },
        },
        "spec": spec,
    }
    try:
        AgentTask.model_validate(doc)
    except ValidationError as exc:
        return None, explain(exc, AgentTask)
    return doc, []


def intake_problem(issue: Issue, problems: list[str]) -> str:
    """The comment that tells the issue's author what to fix."""
    listed = "".join(f"\n- {p}" for p in problems[:20])
    return (
        f"agentfactory cannot make a task of #{issue.number} yet:{listed}\n\nEdit the issue:"
        " it needs the sections `### Goal`, `### Acceptance criteria` and `### Scope`"
        " (optional: `### Non-goals`, `### Context`, `### Depends on`), with list items as"
        " entries. The operator reads it again."
    )


def _unquote(text: str) -> str:
    return text.strip().strip("`").strip()
