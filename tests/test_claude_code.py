"""Claude Code as an engine: the real Claude Code CLI (bundled with the Claude Agent SDK),
run by `ClaudeCodeSession` in a real git workspace, streaming from the strict fake Messages
API. Covers what it is given, what it may do per role, the checks the factory runs after it
stops (handed back in the same session), and how its ends map to our results."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply, tool

from agentfactory.agent.claude_code import CHECKS_TOOL, ClaudeCodeSession, refusal
from agentfactory.agent.tools import workspace_for
from agentfactory.core.handoff import AgentResult, Role
from tests.test_agent_runner import PLAN, calc_repo, contract

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.fakes.anthropic_api import Step

IMPLEMENTATION = {"summary": "add() adds.", "rollback": "revert calc.py"}
VERDICT = {"verdict": "APPROVE", "summary": "Reviewed.", "findings": []}


def session(repo: Path, role: Role, base: str, fake: FakeAnthropic, key: str = API_KEY,
            retries: int = 4, **limits: Any) -> AgentResult:  # fmt: skip
    spec = contract(role, base, limits={"maxTurns": 10, "deadlineSeconds": 300, **limits})
    env = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": key,
           "CLAUDE_CODE_MAX_RETRIES": str(retries)}  # fmt: skip
    return ClaudeCodeSession(spec, workspace_for(spec, repo), env=env).run()


def answer(**fields: Any) -> Reply:
    return Reply([tool("StructuredOutput", **fields)])


def edit(repo: Path, old: str, new: str) -> Reply:
    return Reply([tool("Edit", file_path=str(repo / "calc.py"), old_string=old, new_string=new)])


def read(repo: Path, path: str = "calc.py") -> Reply:
    return Reply([tool("Read", file_path=str(repo / path))])


def said_back(fake: FakeAnthropic, request: int) -> str:
    """What the CLI sent back in the last user turn of request number *request*."""
    return json.dumps(fake.requests[request]["messages"][-1]["content"])


def test_a_planner_session_reads_and_answers_through_the_structured_output(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    with FakeAnthropic([read(repo), answer(**PLAN)]) as fake:
        result = session(repo, Role.PLANNER, base, fake)
    assert (result.status, result.stopped_by) == ("completed", "completed"), result.message
    assert result.plan is not None and result.plan.summary == PLAN["summary"]
    assert result.turns == 2 and result.usage.input_tokens + result.usage.cache_read_tokens > 0
    first = fake.requests[0]
    offered = sorted(t["name"] for t in first["tools"])
    assert offered == ["Glob", "Grep", "Read", "StructuredOutput"], "a planner reads only"
    system = json.dumps(first["system"])
    assert "You are the planner" in system and "structured output" in system
    assert "# Goal" in json.dumps(first["messages"][0]), "the contract is the first message"
    assert fake.streamed == [True, True], "Claude Code streams"
    assert "def add(a, b)" in said_back(fake, 1), "the Read ran in the workspace"


def test_the_factory_runs_the_checks_after_claude_code_stops_and_hands_failures_back(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    script: list[Step] = [
        read(repo), edit(repo, "a - b", "a * b"), answer(**IMPLEMENTATION),
        edit(repo, "a * b", "a + b"), answer(**IMPLEMENTATION),
    ]  # fmt: skip
    with FakeAnthropic(script) as fake:
        result = session(repo, Role.IMPLEMENTER, base, fake)
    assert (result.status, result.stopped_by) == ("completed", "completed"), result.message
    assert result.implementation is not None
    assert [c.status for c in result.implementation.checks] == ["passed"]
    assert "+    return a + b" in result.diff, "the diff is the workspace's own"
    handed_back = said_back(fake, 3)
    assert "the factory ran the checks and these failed" in handed_back
    assert "assert 6 == 5" in handed_back, "with the check's own output"
    # The same session went on: the failure follows the whole conversation so far.
    assert len(fake.requests[3]["messages"]) > len(fake.requests[2]["messages"])
    assert (repo / "calc.py").read_text().endswith("return a + b\n")


def test_the_implementer_runs_the_checks_through_the_factorys_tool_without_a_shell(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    script: list[Step] = [Reply([tool(CHECKS_TOOL)]), read(repo), edit(repo, "a - b", "a + b"),
                          answer(**IMPLEMENTATION)]  # fmt: skip
    with FakeAnthropic(script) as fake:
        result = session(repo, Role.IMPLEMENTER, base, fake)
    assert result.status == "completed", result.message
    offered = sorted(t["name"] for t in fake.requests[0]["tools"])
    # No Bash: a shell would see the CLI's environment.
    assert offered == sorted(["Edit", "Glob", "Grep", "Read", "StructuredOutput", "Write",
                              CHECKS_TOOL])  # fmt: skip
    assert "test (failed, exit 1)" in said_back(fake, 1)


def test_writes_outside_the_scope_or_to_protected_paths_are_refused_to_claude_code(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    ci = repo / ".github" / "workflows" / "ci.yml"
    script: list[Step] = [
        Reply([tool("Write", file_path=str(ci), content="on: []\n")]),
        Reply([tool("Write", file_path=str(repo / "setup.py"), content="x = 1\n")]),
        Reply([tool("Read", file_path="/etc/hostname")]),
        read(repo), edit(repo, "a - b", "a + b"), answer(**IMPLEMENTATION),
    ]  # fmt: skip
    with FakeAnthropic(script) as fake:
        result = session(repo, Role.IMPLEMENTER, base, fake)
    assert result.status == "completed", result.message
    assert "is protected" in said_back(fake, 1)
    assert "outside the task's scope" in said_back(fake, 2)
    assert "outside the workspace" in said_back(fake, 3)
    assert ci.read_text() == "on: push\n" and not (repo / "setup.py").exists()
    assert "setup.py" not in result.diff and ".github" not in result.diff


def test_a_reviewer_is_refused_what_would_change_the_workspace(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.CODE_REVIEWER, base)
    tree = workspace_for(spec, repo)
    for name, args in (("Write", {"file_path": str(repo / "calc.py"), "content": ""}),
                       ("Edit", {"file_path": str(repo / "calc.py")}),
                       ("Bash", {"command": "rm -rf ."}), (CHECKS_TOOL, {})):  # fmt: skip
        said = refusal(tree, Role.CODE_REVIEWER, name, args)
        assert said is not None and "not available to the code-reviewer" in said, name
    assert refusal(tree, Role.CODE_REVIEWER, "Grep", {"pattern": "add"}) is None
    with FakeAnthropic([read(repo), answer(**VERDICT)]) as fake:
        result = session(repo, Role.CODE_REVIEWER, base, fake)
    assert result.verdict is not None and result.verdict.verdict == "APPROVE"
    assert sorted(t["name"] for t in fake.requests[0]["tools"]) == [
        "Glob", "Grep", "Read", "StructuredOutput"]  # fmt: skip


def test_an_answer_that_breaks_the_schema_is_asked_for_again(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script: list[Step] = [answer(verdict="MAYBE", summary="Hmm.", findings=[]), answer(**VERDICT)]
    with FakeAnthropic(script) as fake:
        result = session(repo, Role.PLAN_REVIEWER, base, fake)
    assert result.verdict is not None and result.verdict.verdict == "APPROVE", result.message


def test_a_refused_key_fails_the_session_as_set_up(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    with FakeAnthropic([answer(**PLAN)]) as fake:
        result = session(repo, Role.PLANNER, base, fake, key="not-the-key", retries=1)
    assert (result.status, result.stopped_by) == ("failed", "api-key"), result.message
    assert "authentication_failed" in result.message and "apiKeySecretRef" in result.message
    assert fake.statuses == [401, 401], "one try and the one retry asked for"


def test_turns_are_bounded(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    with FakeAnthropic([read(repo)], repeat_last=True) as fake:
        result = session(repo, Role.PLANNER, base, fake, maxTurns=3)
    assert (result.status, result.stopped_by) == ("stopped", "max-turns"), result.message
    assert len(fake.requests) <= 4
