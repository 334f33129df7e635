"""Restart safety of `agentfactory local`: a run killed with SIGKILL mid-stage resumes from
its saved state, and a merge that landed just before a crash is recognised, not repeated."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agentfactory.core.phases import Phase
from agentfactory.local.driver import LocalFactory
from agentfactory.local.state import StateStore

if TYPE_CHECKING:
    import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def example(tmp_path: Path) -> Path:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("github", "*.py"))
    return copy


def merges(state: Path) -> list[str]:
    log = subprocess.run(
        ["git", "log", "--format=%B", "main"], cwd=state / "remotes" / "webshop.git",
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [
        line.split(": ")[1] for line in log.splitlines() if line.startswith("Agentfactory-Task")
    ]


def local(state: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    return subprocess.Popen(
        [sys.executable, "-m", "agentfactory", "local", "--state", str(state), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


def test_a_run_killed_mid_stage_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    manifests, state = example(tmp_path), tmp_path / "state"
    seen = []
    with local(state, str(manifests)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the event, then kill the whole process group
            seen.append(line)
            if "running implementer discount-codes-implement-1" in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    store = StateStore(state)
    assert store.load("fix-cart-total").phase == Phase.MERGED
    interrupted = store.load("discount-codes")
    assert (interrupted.phase, interrupted.attempt) == (Phase.IMPLEMENTING, 1)

    with local(state, str(manifests)) as again:
        output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert store.load("discount-codes").phase == Phase.MERGED
    assert store.load("discount-codes").attempts.implement == 1, "the same attempt, rerun"
    assert store.load("order-history").phase == Phase.AWAITING_APPROVAL
    assert sorted(merges(state)) == ["discount-codes", "fix-cart-total"], "no task lost or twice"


def test_a_merge_that_landed_before_a_crash_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    manifests, state = example(tmp_path), tmp_path / "state"
    lines: list[str] = []
    first = LocalFactory(paths=[str(manifests)], state_dir=state,
                         replay_dir=manifests / "replays", out=lines.append)  # fmt: skip
    store = StateStore(state)
    while not (store.load("fix-cart-total").phase == Phase.MERGING
               and store.load("fix-cart-total").attempt == 1):  # fmt: skip
        assert first.step(), "\n".join(lines)
    # The merge lands on the remote, then the process dies before saving the outcome.
    status = store.load("fix-cart-total")
    forge = first.factories["webshop"].forge
    landed = forge.merge(task="fix-cart-total", branch=status.branch or "",
                         head_sha=status.head_sha or "", method="squash", title="t", body="b",
                         delete_branch=True)  # fmt: skip
    assert landed.outcome == "merged"
    assert store.load("fix-cart-total").phase == Phase.MERGING, "the outcome was never saved"

    second = LocalFactory(paths=[str(manifests)], state_dir=state,
                          replay_dir=manifests / "replays", out=lines.append)  # fmt: skip
    second.run()
    assert store.load("fix-cart-total").merged_sha == landed.merged_sha
    assert merges(state).count("fix-cart-total") == 1
