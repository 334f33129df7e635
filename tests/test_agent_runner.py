"""The agent runner end to end: the real anthropic SDK over HTTP against the fake Messages
API, in real git workspaces. Covers each role, the bounds, refused escapes, retries of
transient errors, a persistent failure, and the `agentfactory agent` command."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import pytest
from testbed.builders import factory, sha, task_spec
from testbed.fakes.anthropic_api import API_KEY, Fail, FakeAnthropic, Reply, tool
from testbed.gitutil import calc_repo, git

from agentfactory.agent.llm import AnthropicProvider, ReplayProvider
from agentfactory.agent.runner import Runner, render_contract
from agentfactory.agent.tools import ROLES, workspace_for
from agentfactory.cli import main
from agentfactory.core.contracts import contract_for, session_deadline
from agentfactory.core.handoff import RESULT_MARKER, AgentResult, CheckReport, HandoffContract, Role
from agentfactory.core.heartbeat import Heartbeat
from agentfactory.core.phases import Stage
from agentfactory.core.task import AgentTaskStatus, ImplementationNote, PlanSummary

if TYPE_CHECKING:
    from pathlib import Path

TEST = f"{sys.executable} -m pytest -q -p no:cacheprovider tests"


def contract(role: Role, base: str, **overrides: Any) -> HandoffContract:
    fields: dict[str, Any] = {
        "task": "fix-add",
        "role": role,
        "goal": "add() returns the sum of its arguments.",
        "acceptanceCriteria": ["tests/test_calc.py passes"],
        "scope": ["calc.py", "tests/**"],
        "checks": [{"name": "test", "command": TEST}],
        "protectedPaths": [".github/workflows/**"],
        "baseSHA": base,
        "model": "claude-sonnet-4-6",
        "limits": {"maxTurns": 10, "deadlineSeconds": 120},
    }
    return HandoffContract.model_validate({**fields, **overrides})


def run(repo: Path, spec: HandoffContract, fake: FakeAnthropic, **kwargs: Any) -> AgentResult:
    provider = AnthropicProvider(api_key=API_KEY, base_url=fake.url, max_retries=2)
    return Runner(spec, workspace_for(spec, repo), provider, **kwargs).run()


def tool_results(fake: FakeAnthropic, request: int) -> list[dict[str, Any]]:
    """The tool_result blocks the runner sent in request number *request*."""
    content = fake.requests[request]["messages"][-1]["content"]
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


PLAN = {
    "summary": "Make add() add.",
    "steps": ["Change the operator in calc.add", "Run the tests"],
    "filesInScope": ["calc.py"],
    "testsToAddFirst": ["tests/test_calc.py::test_add already fails"],
}


def test_the_implementer_turns_a_failing_test_green_through_tool_calls(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script = [
        Reply([tool("read_file", path="calc.py")]),
        Reply([tool("run_command", command=TEST)]),
        Reply([tool("replace_in_file", path="calc.py", old="a - b", new="a + b")]),
        Reply([tool("run_command", command=TEST)]),
        Reply([tool("submit_implementation", summary="add() now adds.",
                    rollback="git revert the commit")]),
    ]  # fmt: skip
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.IMPLEMENTER, base), fake)

    assert result.status == "completed", result.message
    assert "1 failed" in tool_results(fake, 2)[0]["content"], "the test must fail first"
    assert "1 passed" in tool_results(fake, 4)[0]["content"]
    assert result.implementation is not None
    assert [(c.name, c.status, c.exit_code) for c in result.implementation.checks] == [
        ("test", "passed", 0)
    ], "the runner runs the checks itself on submit"
    assert result.diff is not None and "+    return a + b" in result.diff
    assert result.turns == 5 and not result.replay
    assert result.usage.cache_creation_tokens > 0 and result.usage.cache_read_tokens > 0
    assert result.usage.cost_usd > 0


def test_a_submission_with_failing_checks_is_handed_back(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script = [
        Reply([tool("submit_implementation", summary="done", rollback="revert")]),
        Reply([tool("replace_in_file", path="calc.py", old="a - b", new="a + b")]),
        Reply([tool("submit_implementation", summary="done now", rollback="revert")]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.IMPLEMENTER, base), fake)
    refusal = tool_results(fake, 1)[0]
    assert refusal["is_error"] and "these failed" in refusal["content"]
    assert result.status == "completed" and result.implementation is not None
    assert result.implementation.summary == "done now"


def test_a_reviewer_returns_request_changes_with_findings(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    (repo / "calc.py").write_text("def add(a, b):\n    return 5\n")
    finding = {"file": "calc.py", "line": 2, "severity": "critical",
               "message": "returns a constant", "wouldChangeVerdict": "compute a + b"}  # fmt: skip
    script = [
        Reply([{"type": "text", "text": "Let me look."}, tool("git_diff")]),
        Reply([tool("submit_verdict", verdict="REQUEST_CHANGES",
                    summary="The change hard-codes the answer.", findings=[finding])]),
    ]  # fmt: skip
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.CODE_REVIEWER, base), fake)
    assert "+    return 5" in tool_results(fake, 1)[0]["content"]
    assert result.status == "completed" and result.verdict is not None
    assert result.verdict.verdict == "REQUEST_CHANGES"
    assert result.verdict.findings[0].line == 2
    assert result.diff is None, "only the implementer's result carries a patch"


@pytest.mark.parametrize("role", [Role.PLANNER, Role.PLAN_REVIEWER, Role.CODE_REVIEWER])
def test_read_only_roles_cannot_write(tmp_path: Path, role: Role) -> None:
    repo, base = calc_repo(tmp_path)
    submit = ROLES[role].submit
    answer = PLAN if role == Role.PLANNER else {"verdict": "APPROVE", "summary": "ok"}
    script = [
        Reply([tool("write_file", path="calc.py", content="x = 1\n")]),
        Reply([tool(submit, **answer)]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(role, base), fake)
    refusal = tool_results(fake, 1)[0]
    assert refusal["is_error"] and "not available" in refusal["content"]
    assert (repo / "calc.py").read_text().endswith("a - b\n")
    assert result.status == "completed"


def test_the_planner_submits_a_plan(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script = [Reply([tool("search", pattern="def add")]), Reply([tool("submit_plan", **PLAN)])]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert "calc.py:1:def add(a, b):" in tool_results(fake, 1)[0]["content"]
    assert result.plan is not None and result.plan.steps[0].startswith("Change")
    system = fake.requests[0]["system"][0]["text"]
    assert system.startswith("You are the planner"), "each role has its own prompt"


ESCAPES = [
    pytest.param("write_file", {"path": "../evil.txt", "content": "x"}, "leaves the workspace",
                 id="dotdot"),
    pytest.param("write_file", {"path": "/tmp/evil.txt", "content": "x"}, "is absolute",
                 id="absolute"),
    pytest.param("write_file", {"path": "tests/out/evil.txt", "content": "x"}, "resolves outside",
                 id="symlinked-dir"),
    pytest.param("read_file", {"path": "tests/out/secret.txt"}, "resolves outside",
                 id="read-through-symlink"),
    pytest.param("write_file", {"path": ".github/workflows/ci.yml", "content": "x"}, "is protected",
                 id="protected"),
    pytest.param("write_file", {"path": "docs/notes.md", "content": "x"},
                 "outside the task's scope", id="out-of-scope"),
    pytest.param("read_file", {"path": ".git/config"}, "inside .git", id="git-dir"),
    pytest.param("run_command", {"command": "pytest; cat /etc/passwd"}, "metacharacters",
                 id="shell-chain"),
    pytest.param("run_command", {"command": "curl http://example.test"}, "is not allowed",
                 id="not-allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "message"), ESCAPES)
def test_escapes_are_refused_with_a_message_to_the_model(
    tmp_path: Path, name: str, args: dict[str, Any], message: str
) -> None:
    repo, base = calc_repo(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    (repo / "tests" / "out").symlink_to(outside)
    script = [
        Reply([tool(name, **args)]),
        Reply([tool("submit_implementation", summary="s", rollback="r")]),
    ]
    with FakeAnthropic(script) as fake:
        run(repo, contract(Role.IMPLEMENTER, base, checks=[]), fake)
    refusal = tool_results(fake, 1)[0]
    assert refusal.get("is_error") is True
    assert message in refusal["content"], refusal["content"]
    assert "TOP SECRET" not in json.dumps(fake.requests)
    assert not (outside / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert (repo / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"


def test_commands_do_not_see_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, base = calc_repo(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-should-never-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs-should-never-leak")
    leak = f'{sys.executable} -c "import os; print(sorted(os.environ))"'
    script = [
        Reply([tool("run_command", command=leak)]),
        Reply([tool("submit_implementation", summary="s", rollback="r")]),
    ]
    with FakeAnthropic(script) as fake:
        run(repo, contract(Role.IMPLEMENTER, base, checks=[{"name": "env", "command": leak}]), fake)
    output = tool_results(fake, 1)[0]["content"]
    assert "PATH" in output
    assert "ANTHROPIC_API_KEY" not in output and "GITHUB_TOKEN" not in output


def looping(body: dict[str, Any]) -> Reply:
    return Reply([tool("list_files")])


BOUNDS = [
    pytest.param({"maxTurns": 3}, "max-turns", 3, id="turns"),
    pytest.param({"maxTokens": 1500}, "max-tokens", None, id="tokens"),
    pytest.param({"maxCostUSD": 0.002}, "budget", None, id="dollars"),
]


@pytest.mark.parametrize(("limits", "reason", "turns"), BOUNDS)
def test_bounds_stop_a_looping_script_and_say_which(
    tmp_path: Path, limits: dict[str, Any], reason: str, turns: int | None
) -> None:
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.PLANNER, base, limits={"maxTurns": 50, **limits})
    with FakeAnthropic([looping], repeat_last=True) as fake:
        result = run(repo, spec, fake)
    assert result.status == "stopped" and result.stopped_by == reason, result.message
    assert result.plan is None
    assert len(fake.requests) == result.turns
    if turns is not None:
        assert result.turns == turns


def test_the_deadline_stops_the_loop(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    ticks = iter(range(0, 1000, 20))  # each look at the clock is 20 s later
    spec = contract(Role.PLANNER, base, limits={"deadlineSeconds": 50})
    with FakeAnthropic([looping], repeat_last=True) as fake:
        result = run(repo, spec, fake, clock=lambda: float(next(ticks)))
    assert result.stopped_by == "deadline" and result.turns == 2


def test_an_invalid_answer_is_refused_and_can_be_corrected(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script = [
        Reply([tool("submit_verdict", verdict="MAYBE", summary="hmm")]),
        Reply([tool("submit_verdict", verdict="APPROVE", summary="fine")]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.PLAN_REVIEWER, base), fake)
    refusal = tool_results(fake, 1)[0]
    assert refusal["is_error"] and "verdict" in refusal["content"]
    assert result.verdict is not None and result.verdict.verdict == "APPROVE"


def test_a_text_only_turn_is_asked_for_the_submit_tool(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    script = [
        Reply([{"type": "text", "text": "I think it is fine."}], stop_reason="end_turn"),
        Reply([tool("submit_verdict", verdict="APPROVE", summary="fine")]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.PLAN_REVIEWER, base), fake)
    assert "submit_verdict" in json.dumps(fake.requests[1]["messages"][-1])
    assert result.status == "completed"


@pytest.mark.parametrize("status", [429, 529, 500])
def test_a_transient_error_is_retried_by_the_sdk(tmp_path: Path, status: int) -> None:
    repo, base = calc_repo(tmp_path)
    with FakeAnthropic([Fail(status), Reply([tool("submit_plan", **PLAN)])]) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert fake.statuses == [status, 200]
    assert result.status == "completed" and result.turns == 1


def test_a_persistent_500_yields_a_clean_failure_result(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    with FakeAnthropic([Fail(500)], repeat_last=True) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert fake.statuses == [500, 500, 500], "one try plus max_retries=2"
    assert result.status == "failed" and result.stopped_by == "api-error"
    assert "500" in result.message


def test_the_replay_provider_is_labelled_in_the_result(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    recorded = [{
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "submit_plan", "input": PLAN}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }]  # fmt: skip
    spec = contract(Role.PLANNER, base)
    result = Runner(spec, workspace_for(spec, repo), ReplayProvider(recorded)).run()
    assert result.replay and result.status == "completed" and result.plan is not None


def test_the_agent_command_reads_the_input_dir_and_writes_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = calc_repo(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    spec = contract(Role.PLANNER, base)
    (inputs / "contract.json").write_text(spec.model_dump_json(by_alias=True))
    (inputs / "constitution.md").write_text("Prefer small functions.")
    out = tmp_path / "result.json"
    script = [Reply([tool("submit_plan", **PLAN)])]
    with FakeAnthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        code = main(["agent", "--role", "planner", "--input", str(inputs),
                     "--workspace", str(repo), "--output", str(out)])  # fmt: skip
    result = AgentResult.model_validate_json(out.read_text())
    assert code == 0 and result.plan is not None
    opening = fake.requests[0]["messages"][0]["content"][0]["text"]
    assert "Prefer small functions." in opening
    assert "## calc.py (a file in the task's scope)" in opening
    assert "return a - b" in opening, "the selected files' contents come with the contract"
    assert "calc.py (a file in the task's scope)" in result.context


def test_the_agent_command_refuses_a_role_that_does_not_match_the_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, base = calc_repo(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "contract.json").write_text(contract(Role.PLANNER, base).model_dump_json())
    code = main(["agent", "--role", "implementer", "--input", str(inputs),
                 "--workspace", str(repo), "--output", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2 and "says role 'planner'" in capsys.readouterr().err


def test_an_unreadable_contract_still_yields_a_result(tmp_path: Path) -> None:
    repo, _ = calc_repo(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "contract.json").write_text('{"role": "planner", "goal": ""}')
    out = tmp_path / "result.json"
    code = main(["agent", "--role", "planner", "--input", str(inputs),
                 "--workspace", str(repo), "--output", str(out)])  # fmt: skip
    result = AgentResult.model_validate_json(out.read_text())
    assert code == 1 and result.status == "failed" and result.stopped_by == "invalid-input"
    assert "goal" in result.message


def test_a_same_size_edit_is_seen_by_the_next_check_run(tmp_path: Path) -> None:
    # Found while writing these tests: 'a - b' -> 'a + b' keeps the size, and Python reused
    # stale bytecode from a run in the same second.
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.IMPLEMENTER, base)
    tree = workspace_for(spec, repo)
    assert tree.run_checks()[0].status == "failed"
    tree.replace_in_file("calc.py", "a - b", "a + b")
    assert tree.run_checks()[0].status == "passed"
    assert "__pycache__" not in tree.full_diff(base)


def planner_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: list[Any], out: Path
) -> int:
    """`agentfactory agent --role planner` as a pod runs it, on a planner contract for the
    calc repository, against the fake Messages API answering with *script*."""
    repo, base = calc_repo(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "contract.json").write_text(contract(Role.PLANNER, base).model_dump_json())
    with FakeAnthropic(script) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        return main(["agent", "--role", "planner", "--input", str(inputs),
                     "--workspace", str(repo), "--output", str(out)])  # fmt: skip


def test_the_agent_command_hands_back_the_result_on_every_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "output" / "result.json"
    assert planner_command(tmp_path, monkeypatch, [Reply([tool("submit_plan", **PLAN)])], out) == 0
    marked = [x for x in capsys.readouterr().out.splitlines() if x.startswith(RESULT_MARKER)]
    from_log = AgentResult.model_validate_json(marked[-1].removeprefix(RESULT_MARKER))
    assert from_log == AgentResult.model_validate_json(out.read_text())
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["role"] == "planner" and summary["status"] == "completed"
    assert len((out.parent / "summary.json").read_bytes()) <= 4096


def test_the_checks_command_runs_each_check_and_reports_failures_as_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = calc_repo(tmp_path)
    inputs = tmp_path / "input"
    inputs.mkdir()
    checks = [{"name": "test", "command": TEST}, {"name": "lint", "command": "true"}]
    (inputs / "checks.json").write_text(json.dumps(checks))
    out = tmp_path / "output" / "result.json"
    code = main(["checks", "--input", str(inputs), "--workspace", str(repo),
                 "--output", str(out)])  # fmt: skip
    report = CheckReport.model_validate_json(out.read_text())
    assert code == 0
    assert [(r.name, r.status) for r in report.checks] == [("test", "failed"), ("lint", "passed")]
    assert "assert -1 == 5" in report.checks[0].output_tail
    assert capsys.readouterr().out.splitlines()[-1].startswith(RESULT_MARKER)


def test_the_checks_command_refuses_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "checks.json").write_text('[{"name": "x"}]')
    code = main(["checks", "--input", str(tmp_path / "input"), "--workspace", str(tmp_path),
                 "--output", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 1 and "command" in capsys.readouterr().err


def test_while_it_works_the_session_reports_what_it_has_used_where_the_kubelet_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pod killed mid-session (deadline, OOM, eviction) leaves no result; its termination
    # message, which the kubelet reads however the container ends, holds the usage so far.
    out = tmp_path / "output" / "result.json"
    seen: list[dict[str, Any]] = []

    def second_turn(body: dict[str, Any]) -> Reply:
        seen.append(json.loads((out.parent / "summary.json").read_text()))
        return Reply([tool("submit_plan", **PLAN)])

    script = [Reply([tool("list_files")]), second_turn]
    assert planner_command(tmp_path, monkeypatch, script, out) == 0
    (running,) = seen
    assert running["status"] == "running" and running["turns"] == 1
    # The whole first turn was written to the cache (its breakpoint is on the last block).
    assert running["usage"]["cacheCreationTokens"] > 0 and running["usage"]["outputTokens"] > 0
    final = AgentResult.model_validate_json(out.read_text())
    so_far = sum(
        running["usage"][k]
        for k in ("inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens")
    )
    assert final.usage.total_tokens > so_far, "then the result's"


def test_a_session_ends_well_before_its_pod_does() -> None:
    # The pod's deadline also covers the checkout before and the checks after the session.
    assert session_deadline(1800) == 1620 and session_deadline(120) == 60
    assert session_deadline(7200) == 6900 and session_deadline(60) == 30


def test_what_agents_said_reaches_the_next_stage() -> None:
    # The plan reviewer and the implementer see the whole plan; the code reviewer sees the
    # implementer's note on the patch it reviews.
    plan = PlanSummary(summary="Count quantities.", steps=["edit cart_total"],
                       risky_interfaces=["cart_total(items) callers"],
                       tests_to_add_first=["test_quantity_counts"],
                       open_questions=["Are prices in cents?"])  # fmt: skip
    note = ImplementationNote(summary="Multiplied by quantity.", not_found=["a pricing doc"],
                              skipped=["rounding: out of scope"], rollback="git revert",
                              checks=["test: passed"])  # fmt: skip
    status = AgentTaskStatus(plan=plan, implementation=note, head_sha=sha(1))
    implement = contract_for(task="t", spec=task_spec(), factory=factory(), status=status,
                             stage=Stage.IMPLEMENT, base_sha=sha(0))  # fmt: skip
    opening = render_contract(implement, None)
    for said in ("cart_total(items) callers", "test_quantity_counts", "Are prices in cents?"):
        assert said in opening
    assert implement.implementation is None and "a pricing doc" not in opening
    review = contract_for(task="t", spec=task_spec(), factory=factory(), status=status,
                          stage=Stage.CODE_REVIEW, base_sha=sha(0))  # fmt: skip
    opening = render_contract(review, None)
    for said in ("The implementer's note", "a pricing doc", "rounding: out of scope",
                 "git revert", "test: passed"):  # fmt: skip
        assert said in opening, said


def test_every_turn_leaves_a_heartbeat_in_the_log_for_people_watching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `kubectl logs -f <pod> -c agent` shows the session move, not only its end.
    out = tmp_path / "output" / "result.json"
    script = [Reply([tool("list_files")]), Reply([tool("submit_plan", **PLAN)])]
    assert planner_command(tmp_path, monkeypatch, script, out) == 0
    lines = capsys.readouterr().out.splitlines()
    beats = [beat for line in lines if (beat := Heartbeat.parse(line)) is not None]
    assert [(b.role, b.turn, b.tools) for b in beats] == [
        ("planner", 1, ("list_files",)), ("planner", 2, ("submit_plan",)),
    ]  # fmt: skip
    assert beats[0].tokens > 0 and beats[1].tokens > beats[0].tokens
    assert lines[0].startswith("[heartbeat] planner turn 1/")
    assert lines[-1].startswith(RESULT_MARKER), "the result stays the last line"


def test_a_heartbeat_line_reads_back_as_written() -> None:
    beat = Heartbeat(role="implementer", turn=3, max_turns=40, tools=("edit_file", "run_command"),
                     tokens=12345, cost_usd=0.0421, elapsed_seconds=42.0)  # fmt: skip
    assert beat.line() == ("[heartbeat] implementer turn 3/40 · edit_file, run_command ·"
                           " 12,345 tokens · $0.0421 · 42s")  # fmt: skip
    assert Heartbeat.parse(beat.line()) == beat
    quiet = Heartbeat("planner", 1, 20, (), 10, 0.0, 1.0)
    assert Heartbeat.parse(quiet.line()) == quiet
    assert Heartbeat.parse("[heartbeat] nonsense") is None


def test_an_empty_reply_is_not_sent_back_as_an_empty_turn(tmp_path: Path) -> None:
    # The API may end a turn with no content; a request that carries it back is refused.
    repo, base = calc_repo(tmp_path)
    script = [Reply([], stop_reason="end_turn"), Reply([tool("submit_plan", **PLAN)])]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert result.status == "completed", result.message
    assert fake.statuses == [200, 200]
    last = fake.requests[1]["messages"][-1]
    assert last["role"] == "user" and "submit_plan" in json.dumps(last["content"])


def test_a_reply_cut_at_max_tokens_goes_on_without_its_cut_tool_call(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    cut = Reply([{"type": "text", "text": "Let me write the plan."},
                 tool("submit_plan", summary="Make add")], stop_reason="max_tokens")  # fmt: skip
    with FakeAnthropic([cut, Reply([tool("submit_plan", **PLAN)])]) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert result.status == "completed" and result.plan is not None
    assert result.plan.summary == "Make add() add.", "the cut call was never run"
    sent = json.dumps(fake.requests[1]["messages"][-2:])
    assert "Let me write the plan." in sent and "tool_use" not in sent
    assert "cut at max_tokens" in sent


def test_a_refusal_stops_the_session_and_says_so(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    refused = Reply([{"type": "text", "text": "I can't help with that."}], stop_reason="refusal")
    with FakeAnthropic([refused]) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert (result.status, result.stopped_by) == ("failed", "refusal")
    assert result.message == "the model refused: I can't help with that."
    assert len(fake.requests) == 1, "not asked again"


def test_each_turn_reads_the_conversation_so_far_from_the_cache(tmp_path: Path) -> None:
    # Only the system prompt was cached once: every turn paid for the whole conversation.
    repo, base = calc_repo(tmp_path)
    script = [
        Reply([tool("read_file", path="calc.py")]),
        Reply([tool("run_command", command=TEST)]),
        Reply([tool("submit_plan", **PLAN)]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert result.status == "completed", result.message
    first, second, third = fake.usages
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 0
    # The next turn repeats the whole previous request: all of it is read, only the new
    # assistant turn and tool result are written.
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert third["cache_read_input_tokens"] == (
        second["cache_read_input_tokens"] + second["cache_creation_input_tokens"]
    )
    assert third["cache_creation_input_tokens"] < third["cache_read_input_tokens"]
    sent = fake.requests[2]["messages"]
    marked = [b for m in sent for b in (m["content"] if isinstance(m["content"], list) else [])
              if "cache_control" in b]  # fmt: skip
    assert marked == [sent[-1]["content"][-1]], "one breakpoint, on the last block"
    assert result.usage.cache_read_tokens == sum(u["cache_read_input_tokens"] for u in fake.usages)


def test_every_turn_streams_so_a_long_answer_may_be_asked_for(tmp_path: Path) -> None:
    # The SDK refuses to wait for a whole answer that may take longer than ten minutes: with
    # 32,000 output tokens a turn, a session that did not stream failed before its first call.
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.PLANNER, base, limits={"maxTurns": 5, "maxOutputTokens": 32_000})
    with FakeAnthropic([Reply([tool("list_files")]), Reply([tool("submit_plan", **PLAN)])]) as fake:
        result = run(repo, spec, fake)
    assert result.status == "completed", result.message
    assert fake.streamed == [True, True]
    assert result.usage.output_tokens == sum(u["output_tokens"] for u in fake.usages)


def test_a_paused_turn_is_sent_back_as_it_stands_to_be_continued(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    paused = Reply([{"type": "text", "text": "Still reading."}], stop_reason="pause_turn")
    with FakeAnthropic([paused, Reply([tool("submit_plan", **PLAN)])]) as fake:
        result = run(repo, contract(Role.PLANNER, base), fake)
    assert result.status == "completed", result.message
    last = fake.requests[1]["messages"][-1]
    assert last["role"] == "assistant", "continued, not answered"
    assert [b["text"] for b in last["content"]] == ["Still reading."]
    assert len(fake.requests[1]["messages"]) == 2


def test_old_tool_results_make_way_before_the_prompt_outgrows_the_window(tmp_path: Path) -> None:
    # Each read adds about 900 tokens; the window holds 4,000. Without room made, the fifth
    # request is refused as too long and the session fails.
    repo, base = calc_repo(tmp_path)
    (repo / "big.py").write_text("".join(f"VALUE_{n} = {n!r} * 12\n" for n in range(200)))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "big")
    base = git(repo, "rev-parse", "HEAD")
    reads = [Reply([tool("read_file", path="big.py")]) for _ in range(6)]
    spec = contract(Role.PLANNER, base, limits={"maxTurns": 10, "windowTokens": 4_000})
    with FakeAnthropic([*reads, Reply([tool("submit_plan", **PLAN)])],
                       context_window=4_000) as fake:  # fmt: skip
        result = run(repo, spec, fake)
    assert result.status == "completed", result.message
    assert 400 not in fake.statuses
    last = fake.requests[-1]["messages"]
    results = [b for m in last if isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]  # fmt: skip
    assert "VALUE_199" in results[-1]["content"], "the newest result is whole"
    assert "VALUE_199" not in results[0]["content"], "the oldest made way"
    assert "read the file again" in results[0]["content"]


def collect(
    tmp_path: Path, repo: Path, role: Role, base: str, written: str | None
) -> tuple[int, AgentResult]:
    """`agentfactory collect` after an agent image that wrote *written* (None: nothing)."""
    inputs = tmp_path / "input"
    inputs.mkdir(exist_ok=True)
    (inputs / "contract.json").write_text(contract(role, base).model_dump_json(by_alias=True))
    out = tmp_path / "output" / "result.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    if written is not None:
        out.write_text(written)
    code = main(["collect", "--role", role.value, "--input", str(inputs), "--workspace",
                 str(repo), "--output", str(out)])  # fmt: skip
    return code, AgentResult.model_validate_json(out.read_text())


def test_collect_takes_an_images_answer_but_never_its_claimed_diff_or_checks(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    claimed = {"role": "implementer", "status": "completed", "stoppedBy": "completed",
               "diff": "a diff the image only claims", "usage": {"inputTokens": 7},
               "implementation": {"summary": "Fixed.", "rollback": "revert",
                                  "checks": [{"name": "test", "command": "true",
                                              "exitCode": 0, "status": "passed"}]}}  # fmt: skip
    code, result = collect(tmp_path, repo, Role.IMPLEMENTER, base, json.dumps(claimed))
    assert code == 0 and result.status == "completed"
    assert result.diff.startswith("diff --git a/calc.py") and "+    return a + b" in result.diff
    assert result.implementation is not None
    assert [c.command for c in result.implementation.checks] == [TEST], "run here, not claimed"
    assert result.usage.input_tokens == 7, "usage is the image's word (until a gateway meters it)"


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (None, "the agent image wrote no valid result"),
        ("{not json", "the agent image wrote no valid result"),
        (json.dumps({"role": "planner", "status": "completed", "stoppedBy": "completed",
                     "plan": PLAN}), "answered as the planner, not the code-reviewer"),
        (json.dumps({"role": "code-reviewer", "status": "completed", "stoppedBy": "completed"}),
         "completed without the code-reviewer's answer"),
    ],
)  # fmt: skip
def test_collect_fails_an_image_that_handed_back_no_usable_result(
    tmp_path: Path, written: str | None, said: str
) -> None:
    repo, base = calc_repo(tmp_path)
    code, result = collect(tmp_path, repo, Role.CODE_REVIEWER, base, written)
    assert (code, result.status, result.stopped_by) == (1, "failed", "no-result")
    assert said in result.message


def test_the_implementers_shell_keeps_only_changes_inside_the_scope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base = calc_repo(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-should-never-leak")
    script = [
        Reply(
            [tool("shell", command="grep -n 'return' calc.py | sed 's/-/+/' ; env | grep -c KEY")]
        ),
        Reply(
            [
                tool(
                    "shell",
                    command="sed -i 's/a - b/a + b/' calc.py && echo 'on: []' >"
                    " .github/workflows/ci.yml && echo x > setup.py",
                )
            ]
        ),
        Reply([tool("submit_implementation", summary="s", rollback="r")]),
    ]
    with FakeAnthropic(script) as fake:
        result = run(repo, contract(Role.IMPLEMENTER, base), fake)
    piped = tool_results(fake, 1)[0]["content"]
    assert "2:    return a + b" in piped, "pipes work"
    assert piped.splitlines()[-1] == "0", "no key in the shell's environment"
    said = tool_results(fake, 2)[0]["content"]
    assert "put back as they were (outside the scope, or protected): .github/workflows/ci.yml," \
        " setup.py" in said  # fmt: skip
    assert (repo / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"
    assert not (repo / "setup.py").exists()
    assert result.status == "completed" and "+    return a + b" in result.diff
    assert "setup.py" not in result.diff and "workflows" not in result.diff
