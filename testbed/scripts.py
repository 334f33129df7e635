"""Scripted pipelines shared by the local driver's and the operator's tests: a small shop
repository as the remote, FactorySpec and AgentTask documents, and a router that answers the
fake Messages API with each (task, role) session's script."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.fakes.anthropic_api import Fail, Reply, tool

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).parent.parent
CHECK = "python3 -m unittest discover -q"
CART = "    return sum(price for price, quantity in items)"
CART_FIXED = "    return sum(price * quantity for price, quantity in items)"
FILES = {
    ".gitignore": "shop/_speedups.py\n",
    "shop/__init__.py": "",
    "shop/cart.py": f"def cart_total(items):\n{CART}\n",
    "shop/pricing.py": "DISCOUNTS = {}\n",
    "tests/__init__.py": "",
    "tests/test_cart.py": "import unittest\n\nfrom shop.cart import cart_total\n\n\n"
    "class Cart(unittest.TestCase):\n    def test_quantity(self):\n"
    "        self.assertEqual(cart_total([(250, 2)]), 500)\n",
    "tools/bump.py": "from pathlib import Path\n\nPath('.github/workflows/ci.yml')"
    ".write_text('on: [push, pull_request]\\n')\n",
    ".github/workflows/ci.yml": "on: push\n",
    "migrations/0001.sql": "CREATE TABLE carts (id INTEGER);\n",
}


def factory_doc(remote: Path, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "repository": {"url": str(remote), "forge": "git"},
        "checks": [{"name": "test", "command": CHECK, "timeoutSeconds": 120}],
        "sandbox": {"timeoutSeconds": 120},
        "escalation": {"rules": [
            {"name": "migrations", "paths": ["migrations/**"]},
            {"name": "drop-table", "contentPatterns": [r"(?i)drop\s+table"], "action": "Park"},
        ]},
    }  # fmt: skip
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
            "metadata": {"name": "shop"}, "spec": base}  # fmt: skip


def task_doc(name: str, goal: str, scope: list[str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "AgentTask",
            "metadata": {"name": name},
            "spec": {"factoryRef": "shop", "goal": goal, "acceptanceCriteria": ["it works"],
                     "scope": {"paths": scope}, **spec}}  # fmt: skip


ROLES = {
    "You are the planner": "planner",
    "You are the plan reviewer": "plan-reviewer",
    "You are the implementer": "implementer",
    "You are the code reviewer": "code-reviewer",
}


def plan() -> list[Reply]:
    return [Reply([tool("submit_plan", summary="Do it.", steps=["Change the code"])])]


def verdict(value: str = "APPROVE", finding: str = "") -> list[Reply]:
    findings = [{"file": "shop/cart.py", "line": 2, "message": finding}] if finding else []
    return [Reply([tool("submit_verdict", verdict=value, summary="Reviewed.", findings=findings)])]


def implement(*edits: dict[str, Any], summary: str = "Done.") -> list[Reply]:
    return [
        *[Reply([edit]) for edit in edits],
        Reply([tool("submit_implementation", summary=summary, rollback="revert")]),
    ]


def replace(path: str, old: str, new: str) -> dict[str, Any]:
    return tool("replace_in_file", path=path, old=old, new=new)


#: Where a pod's workspace is (Claude Code's tools take absolute paths).
POD_WORKSPACE = "/workspace"


def claude_code_edit(path: str, old: str, new: str, root: str = POD_WORKSPACE) -> list[Reply]:
    """A Claude Code implementer's session: read the file, edit it, answer."""
    where = f"{root}/{path}"
    return [
        Reply([tool("Read", file_path=where)]),
        Reply([tool("Edit", file_path=where, old_string=old, new_string=new)]),
        Reply([tool("StructuredOutput", summary="Done.", rollback="revert")]),
    ]


def claude_code_verdict(value: str = "APPROVE") -> list[Reply]:
    """A Claude Code reviewer's session: answer at once."""
    return [Reply([tool("StructuredOutput", verdict=value, summary="Reviewed.", findings=[])])]


@dataclass
class Router:
    """Routes each request to the script of its (task, role) session."""

    goals: dict[str, str]
    sessions: dict[tuple[str, str], list[list[Reply]]]
    current: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    started: list[tuple[str, str]] = field(default_factory=list)
    openings: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    on_start: Callable[[tuple[str, str]], None] | None = None
    """Called with (task, role) as each session starts (from the fake's request thread)."""

    def __call__(self, body: dict[str, Any]) -> Reply | Fail:
        # The builtin runner's system prompt is the role's; Claude Code appends the role's to
        # its own.
        system = "\n".join(b.get("text", "") for b in body["system"])
        role = next(r for prefix, r in ROLES.items()
                    if system.startswith(prefix) or f"\n{prefix}" in system)  # fmt: skip
        first = body["messages"][0]["content"]  # text, or blocks (as the API takes both)
        opening = first if isinstance(first, str) else "".join(
            b.get("text", "") for b in first if b.get("type") == "text")  # fmt: skip
        task = next(t for goal, t in self.goals.items() if f"# Goal\n\n{goal}" in opening)
        key = (task, role)
        if len(body["messages"]) == 1:
            queue = self.sessions.get(key)
            defaults = {"planner": plan, "plan-reviewer": verdict, "code-reviewer": verdict}
            if not queue and role not in defaults:
                return Fail(500, f"the test scripted no more {role} sessions for {task}")
            script = queue.pop(0) if queue else defaults[role]()
            self.current[key] = list(script)
            self.started.append(key)
            self.openings.setdefault(key, []).append(opening)
            if self.on_start is not None:
                self.on_start(key)
        if not self.current[key]:
            return Fail(500, f"the test's {role} session for {task} has no more replies")
        return self.current[key].pop(0)
