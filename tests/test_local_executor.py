"""LocalExecutor: agent attempts and sandbox CI as real processes in fresh clones, confined by
bubblewrap (installed by .ci/run), with deadlines, and the loud warning when unconfined."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agentfactory.core.common import Check
from agentfactory.core.handoff import AgentResult, HandoffContract, Role
from agentfactory.forge.git import GitForge
from agentfactory.local.executor import LocalExecutor

PLAN = {"summary": "s", "steps": ["one"]}


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "app.py").write_text("x = 1\n")
    commit = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], commit):
        subprocess.run(["git", *args], cwd=seed, check=True)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    return bare


def executor(tmp_path: Path, remote: Path, **kwargs: object) -> LocalExecutor:
    forge = GitForge(remote=str(remote), workdir=tmp_path / "state" / "forge")
    forge.sync()
    return LocalExecutor(forge=forge, state_dir=tmp_path / "state", **kwargs)  # type: ignore[arg-type]


def check(command: str, timeout: int = 60) -> Check:
    return Check(name="c", command=command, timeout_seconds=timeout)


def test_the_sandbox_confines_writes_and_hides_the_operator(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shutil.which("bwrap"), "install bubblewrap (apt-get install bubblewrap); .ci/run does"
    monkeypatch.setenv("GITHUB_TOKEN", "ghs-secret")
    ex = executor(tmp_path, remote)
    (tmp_path / "state" / "operator-secret.txt").write_text("do not read")
    runs = ex.run_checks(pod="t-ci-1", ref="main", checks=[
        check("touch /etc/agentfactory-escaped"),
        check(f"cat {tmp_path}/state/operator-secret.txt"),
        check("echo token=${GITHUB_TOKEN:-none}"),
        check("echo ok > written.txt && cat written.txt"),
        check(f"touch {tmp_path}/escaped"),  # /tmp is a private tmpfs inside
    ]).checks  # fmt: skip
    assert [r.status for r in runs] == ["failed", "failed", "passed", "passed", "passed"]
    assert "Read-only file system" in runs[0].output_tail
    assert not (tmp_path / "escaped").exists(), "a write to /tmp must not reach the host"
    assert "do not read" not in runs[1].output_tail
    assert "token=none" in runs[2].output_tail
    assert "ok" in runs[3].output_tail


def test_the_sandbox_runs_under_memory_file_and_size_limits(tmp_path: Path, remote: Path) -> None:
    ex = executor(tmp_path, remote, memory_bytes=1 << 30)
    limits = ("python3 -c 'import resource as r; print(*(r.getrlimit(k)[0] for k in"
              " (r.RLIMIT_AS, r.RLIMIT_NOFILE, r.RLIMIT_FSIZE)))'")  # fmt: skip
    (run,) = ex.run_checks(pod="t-ci-1", ref="main", checks=[check(limits)]).checks
    assert run.status == "passed", run.output_tail
    assert f"{1 << 30} 4096 {2 << 30}" in run.output_tail


def test_checks_find_no_api_key_in_any_process_of_the_sandbox(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checks run code an agent wrote; the key is for agents only, and never goes on a
    # command line (which every process, on the host too, can read).
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-local-key")
    ex = executor(tmp_path, remote)
    look = "for p in /proc/[0-9]*; do cat $p/environ $p/cmdline; done | tr '\\0' ' '"
    (run,) = ex.run_checks(pod="t-ci-1", ref="main", checks=[check(look)]).checks
    assert run.status == "passed" and "checks" in run.output_tail, run.output_tail
    assert "sk-local-key" not in run.output_tail


def test_ci_runs_on_the_exact_ref_and_times_out(tmp_path: Path, remote: Path) -> None:
    ex = executor(tmp_path, remote)
    runs = ex.run_checks(pod="t-ci-2", ref="main", checks=[
        check("grep -q 'x = 1' app.py"), check("sleep 30", timeout=1),
    ]).checks  # fmt: skip
    assert runs[0].status == "passed"
    assert runs[1].status == "timeout" and runs[1].exit_code is None


def recorded(tool_input: dict[str, object]) -> list[dict[str, object]]:
    return [{
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "submit_plan",
                     "input": tool_input}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }]  # fmt: skip


def contract() -> HandoffContract:
    return HandoffContract(
        task="t", role=Role.PLANNER, goal="g", acceptance_criteria=["c"], scope=["**"],
        model="claude-sonnet-4-6",
    )  # fmt: skip


def test_an_agent_attempt_runs_the_real_entrypoint_on_a_replay(
    tmp_path: Path, remote: Path
) -> None:
    replays = tmp_path / "replays"
    replays.mkdir()
    (replays / "t-plan-1.json").write_text(json.dumps(recorded(PLAN)))
    ex = executor(tmp_path, remote, replay_dir=replays)
    outcome = ex.run_agent(pod="t-plan-1", contract=contract(), ref="main", constitution="Be kind.")
    assert outcome.failure == "" and outcome.result_json is not None
    result = AgentResult.model_validate_json(outcome.result_json)
    assert result.replay and result.plan is not None


def test_a_crashing_agent_is_a_malformed_result_not_a_crash(tmp_path: Path, remote: Path) -> None:
    replays = tmp_path / "replays"
    replays.mkdir()
    (replays / "t-plan-1.json").write_text("{not json")
    ex = executor(tmp_path, remote, replay_dir=replays)
    outcome = ex.run_agent(pod="t-plan-1", contract=contract(), ref="main", constitution=None)
    assert outcome.result_json is None and outcome.reason == "malformed-result"
    assert "JSONDecodeError" in (outcome.failure or "")


def test_without_bubblewrap_it_warns_once_and_loudly(tmp_path: Path, remote: Path) -> None:
    said: list[str] = []
    ex = executor(tmp_path, remote, bwrap=None, say=said.append)
    ex.run_checks(pod="t-ci-1", ref="main", checks=[check("true")])
    ex.run_checks(pod="t-ci-2", ref="main", checks=[check("true")])
    assert len(said) == 1 and "UNCONFINED" in said[0]


def test_the_interpreter_is_visible_even_when_it_lives_under_tmp(
    tmp_path: Path, remote: Path
) -> None:
    # Found in a fresh clone under /tmp: the sandbox's private /tmp hid the venv's python.
    import sys

    ex = executor(tmp_path, remote)
    argv = ex._confine(["true"], workspace=tmp_path, base=tmp_path)
    binds = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"}
    assert sys.prefix in binds and str(Path(sys.executable).parent) in binds
    assert argv.index("--tmpfs") < max(i for i, a in enumerate(argv) if a == "--ro-bind")
