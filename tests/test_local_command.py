"""`agentfactory local` as a newcomer meets it: mistakes in the input or the environment are
messages with exit codes, never tracebacks; the demo stays a demo with a key exported; one run
per state directory; Ctrl-C says how to resume, and the run resumes."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from agentfactory.cli import main
from agentfactory.core.phases import Phase
from agentfactory.local.command import UsageError, choose_agents, live_warning
from agentfactory.local.driver import LocalFactory
from agentfactory.local.lock import holding
from agentfactory.local.state import StateStore
from tests.test_local_resume import example, local

if TYPE_CHECKING:
    from pathlib import Path


def test_a_path_that_does_not_exist_is_named_instead_of_asking_for_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["local", str(tmp_path / "nosuchdir"), "--state", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "nosuchdir: no such file or directory" in err and "ANTHROPIC_API_KEY" not in err


def test_context_outside_a_git_repository_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["context", "--repo", str(tmp_path), "--goal", "anything"]) == 2
    assert "is not a git working tree" in capsys.readouterr().err


def test_an_exported_key_does_not_turn_the_demo_live(tmp_path: Path) -> None:
    manifests = example(tmp_path)
    paths = [str(manifests)]
    agents = choose_agents(paths, replay=False, live=False, key=True)
    assert agents.replay == manifests / "replays", "the replays cover every task"
    assert "ANTHROPIC_API_KEY is set but not used: pass --live" in agents.why
    assert choose_agents(paths, replay=False, live=True, key=True).replay is None
    (manifests / "replays" / "order-history-plan-1.json").unlink()
    assert choose_agents(paths, replay=False, live=False, key=True).replay is None, "not covered"
    assert choose_agents(paths, replay=True, live=False, key=True).replay is not None
    with pytest.raises(UsageError, match="--live needs the model key"):
        choose_agents(paths, replay=False, live=True, key=False)
    with pytest.raises(UsageError, match="no recorded replays cover these tasks"):
        choose_agents(paths, replay=False, live=False, key=False)


def test_a_live_run_says_what_it_may_cost_before_it_starts(tmp_path: Path) -> None:
    manifests = example(tmp_path)
    factory = LocalFactory(paths=[str(manifests)], state_dir=tmp_path / "s", out=print)
    caps = sum(factory.factories[t.spec.factory_ref].spec.spec.budget.max_cost_usd_per_task
               for t in factory.tasks.values())  # fmt: skip
    said = live_warning(factory)
    assert said.startswith("Agents call the Anthropic API (claude-")
    assert f"3 task(s), up to ${caps:,.2f} in all by budget.maxCostUSDPerTask" in said


def test_a_second_run_on_the_same_state_is_refused_with_the_holders_pid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    with holding(state):
        assert main(["local", "approve", "fix-cart-total", "--state", str(state)]) == 2
        assert main(["local", str(example(tmp_path)), "--state", str(state)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"another `agentfactory local` (pid {os.getpid()}) is running on") == 2
    assert not (state / "run.json").exists(), "the refused run changed nothing"


def test_ctrl_c_says_how_to_resume_and_the_run_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests, state = example(tmp_path), tmp_path / "state"
    seen = []
    with local(state, str(manifests)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # interrupt when an agent is at work, as a person would
            seen.append(line)
            if "running implementer fix-cart-total-implement-1" in line:
                # Not a terminal: each agent's heartbeats are lines, as they come.
                assert any("fix-cart-total-plan-1" in seen_line and " turn 1/" in seen_line
                           for seen_line in seen), "".join(seen)  # fmt: skip
                os.killpg(proc.pid, signal.SIGINT)
                break
        seen += proc.stdout.readlines()
    said = "".join(seen)
    assert proc.returncode == 130, said
    assert "Traceback" not in said and "KeyboardInterrupt" not in said
    assert f"resumes where it stopped with: agentfactory local {manifests} --state" in said
    # An action that does not apply exits 3, so that a script notices.
    assert main(["local", "approve", "fix-cart-total", "--state", str(state)]) == 3
    assert "approve ignored: nothing awaits approval" in capsys.readouterr().out
    again = local(state, str(manifests))
    out, _ = again.communicate()
    assert again.returncode == 0, out
    assert StateStore(state).load("fix-cart-total").phase == Phase.MERGED


def test_on_a_terminal_the_agents_at_work_are_a_live_table(tmp_path: Path) -> None:
    script = tmp_path / "view.py"
    script.write_text(
        "from agentfactory.core.heartbeat import Heartbeat\n"
        "from agentfactory.local.progress import Progress\n"
        "view = Progress(print, terminal=True)\n"
        "view.started('fix-cart-total-implement-1', 'implementer')\n"
        "view.beat('fix-cart-total-implement-1', Heartbeat('implementer', 3, 40,"
        " ('replace_in_file',), 12345, 0.0421, 42.0))\n"
        "view.ended('fix-cart-total-implement-1')\n"
    )
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=follower, stderr=follower,
                            env=env)  # fmt: skip
    os.close(follower)
    seen = b""
    while True:  # until the child closes the terminal
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other end is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait() == 0, seen.decode(errors="replace")
    drawn = seen.decode(errors="replace")
    assert "agents at work" in drawn and "\x1b[" in drawn, "drawn with a terminal's escapes"
    for cell in ("fix-cart-total-implement-1", "implementer", "3/40", "replace_in_file",
                 "12,345", "$0.0421"):  # fmt: skip
        assert cell in drawn, cell


def test_a_repository_that_cannot_be_cloned_is_said_once_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = example(tmp_path)
    factory = manifests / "factory.yaml"
    factory.write_text(factory.read_text().replace("url: webshop.bundle",
                                                   f"url: {tmp_path / 'gone.git'}"))  # fmt: skip
    assert main(["local", str(manifests), "--state", str(tmp_path / "s")]) == 1, "not done"
    said = capsys.readouterr()
    assert "Traceback" not in said.out + said.err
    assert "plan #1 cannot advance: git clone" in said.out
    assert "fix-cart-total         Planning" in said.out
    assert "(waiting for fix-cart-total to merge)" in said.out
