"""The builtin runner against Claude Code on the same scripted task: requests, prompt tokens and
the share of them served from the prompt cache, per stage, with each engine's session against
the strict fake Messages API in the same run.

    python -m benchmarks.engines

The task: a one-file package whose test fails (add() subtracts). Each stage does the same work
on both engines: the planner and both reviewers read the file and answer; the implementer
reads it, edits it and answers, and the factory's checks then pass. Tokens are the fake's
(four characters a token), so the figures compare the engines' prompts, not real bills. The
baseline is the builtin runner: Claude Code's figures are given as ratios to it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply, tool
from testbed.gitutil import calc_repo

from agentfactory.agent.claude_code import ClaudeCodeSession
from agentfactory.agent.llm import AnthropicProvider
from agentfactory.agent.runner import Runner
from agentfactory.agent.tools import workspace_for
from agentfactory.core.handoff import HandoffContract, Role

TEST = f"{sys.executable} -m pytest -q -p no:cacheprovider tests"
PLAN = {"summary": "Make add() add.", "steps": ["Change the operator in calc.py"]}
VERDICT = {"verdict": "APPROVE", "summary": "Reviewed.", "findings": []}
IMPLEMENTATION = {"summary": "add() adds.", "rollback": "revert calc.py"}
ANSWERS = {Role.PLANNER: ("submit_plan", PLAN), Role.PLAN_REVIEWER: ("submit_verdict", VERDICT),
           Role.IMPLEMENTER: ("submit_implementation", IMPLEMENTATION),
           Role.CODE_REVIEWER: ("submit_verdict", VERDICT)}  # fmt: skip


def script(engine: str, role: Role, repo: Path) -> list[Reply]:
    """The same work in each engine's tools."""
    if engine == "builtin":
        steps = [Reply([tool("read_file", path="calc.py")])]
        if role == Role.IMPLEMENTER:
            steps.append(Reply([tool("replace_in_file", path="calc.py", old="a - b", new="a + b")]))
        name, answer = ANSWERS[role]
        return [*steps, Reply([tool(name, **answer)])]
    where = str(repo / "calc.py")
    steps = [Reply([tool("Read", file_path=where)])]
    if role == Role.IMPLEMENTER:
        steps.append(Reply([tool("Edit", file_path=where, old_string="a - b", new_string="a + b")]))
    return [*steps, Reply([tool("StructuredOutput", **ANSWERS[role][1])])]


def stage(engine: str, role: Role, root: Path) -> dict[str, Any]:
    repo, base = calc_repo(root)
    contract = HandoffContract.model_validate({
        "task": "fix-add", "role": role, "goal": "add() returns the sum of its arguments.",
        "acceptanceCriteria": ["tests/test_calc.py passes"], "scope": ["calc.py", "tests/**"],
        "checks": [{"name": "test", "command": TEST}], "baseSHA": base,
        "model": "claude-sonnet-4-6", "limits": {"maxTurns": 10, "deadlineSeconds": 300},
    })  # fmt: skip
    tree = workspace_for(contract, repo)
    with FakeAnthropic(list(script(engine, role, repo))) as fake:
        began = time.perf_counter()
        if engine == "builtin":
            provider = AnthropicProvider(api_key=API_KEY, base_url=fake.url)
            result = Runner(contract, tree, provider).run()
        else:
            env = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": API_KEY}
            result = ClaudeCodeSession(contract, tree, env=env).run()
        seconds = time.perf_counter() - began
    if result.status != "completed":
        raise SystemExit(f"{engine} {role.value}: {result.message}")
    prompt = sum(u["input_tokens"] + u["cache_read_input_tokens"]
                 + u["cache_creation_input_tokens"] for u in fake.usages)  # fmt: skip
    read = sum(u["cache_read_input_tokens"] for u in fake.usages)
    return {"requests": len(fake.requests), "prompt": prompt, "cached": read / prompt,
            "output": sum(u["output_tokens"] for u in fake.usages), "seconds": seconds}  # fmt: skip


def main() -> None:
    rows = []
    totals: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for role in ANSWERS:
            figures = {}
            for engine in ("builtin", "claude-code"):
                figures[engine] = stage(engine, role, Path(tmp) / f"{engine}-{role.value}")
                total = totals.setdefault(engine, {"requests": 0, "prompt": 0, "read": 0})
                total["requests"] += figures[engine]["requests"]
                total["prompt"] += figures[engine]["prompt"]
                total["read"] += figures[engine]["prompt"] * figures[engine]["cached"]
            rows.append((role.value, figures))
    out = sys.stdout.write
    out("| stage | engine | requests | prompt tokens | from cache | seconds |\n")
    out("| --- | --- | --- | --- | --- | --- |\n")
    for role, figures in rows:
        base = figures["builtin"]
        for engine, f in figures.items():
            ratio = "" if engine == "builtin" else f" ({f['prompt'] / base['prompt']:.1f}x)"
            out(f"| {role} | {engine} | {f['requests']} | {f['prompt']:,}{ratio} |"
                f" {f['cached']:.0%} | {f['seconds']:.2f} |\n")  # fmt: skip
    for engine, total in totals.items():
        out(f"| all four | {engine} | {total['requests']:.0f} | {total['prompt']:,.0f} |"
            f" {total['read'] / total['prompt']:.0%} | |\n")  # fmt: skip


if __name__ == "__main__":
    main()
