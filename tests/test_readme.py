"""The README's commands do what it says they do, as a newcomer runs them: the demo line
(two tasks merge, one waits for an approval that then merges it) and the console sessions
it shows, output included."""

from __future__ import annotations

import re
import shlex
import shutil
from typing import TYPE_CHECKING

from testbed.browser import rendered_dom, screenshot, share_of

from agentfactory.cli import main
from agentfactory.core.phases import Phase
from agentfactory.local.state import StateStore
from agentfactory.pictures.graph import COLOURS
from tests.test_repository import ROOT, readme_commands

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

README = (ROOT / "README.md").read_text()


def agentfactory_args(command: str) -> list[str]:
    """The arguments of the `agentfactory` command in a shell line (after any `&&`)."""
    last = command.split("&&")[-1].strip()
    words = shlex.split(last)
    assert words[0].endswith("agentfactory"), last
    return words[1:]


def test_the_demo_line_merges_two_tasks_and_the_approval_it_names_merges_the_third(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the README's paths are relative to a clone
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-used")  # the demo stays a demo
    assert main(agentfactory_args(readme_commands()[0])) == 0
    statuses = StateStore(tmp_path / ".agentfactory")
    phases = {name: statuses.load(name).phase
              for name in ("fix-cart-total", "discount-codes", "order-history")}  # fmt: skip
    assert phases == {"fix-cart-total": Phase.MERGED, "discount-codes": Phase.MERGED,
                      "order-history": Phase.AWAITING_APPROVAL}  # fmt: skip
    approve = re.search(r"`\.venv/bin/(agentfactory local approve\s+order-history)`", README)
    assert approve, "the README names the approval"
    report = tmp_path / ".agentfactory" / "report.html"
    waiting = screenshot(report)
    assert main(agentfactory_args(" ".join(approve[1].split()))) == 0
    assert statuses.load("order-history").phase == Phase.MERGED
    out = capsys.readouterr().out
    assert "replays" in out.splitlines()[0] and "not used: pass --live" in out.splitlines()[0]
    assert f"the run's report (graph, timelines, patches, usage): {report}" in out
    # The report, as a person sees it in a browser: the graph in the phases' colours (the
    # approval the first run waited for, amber; after it, all green), every task's section
    # with its timeline, plan, review and patch.
    assert share_of(waiting, COLOURS[Phase.AWAITING_APPROVAL]) > 0.001
    merged = screenshot(report)
    assert share_of(merged, COLOURS[Phase.AWAITING_APPROVAL]) < 0.0005, "nothing waits now"
    assert share_of(merged, COLOURS[Phase.MERGED]) > 0.005
    dom = rendered_dom(report)
    for name in ("fix-cart-total", "discount-codes", "order-history"):
        assert f'data-task="{name}" data-phase="Merged"' in dom, name
        assert f'id="task-{name}"' in dom
    assert dom.count('class="timeline"') == 3 and "Patch of fix-cart-total-implement-1" in dom
    assert '<span class="add">+' in dom, "the patch's added lines, marked"
    assert "approved by" in dom, "the escalation and who approved it"


def test_each_console_session_prints_what_the_readme_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    sessions = re.findall(r"```console\n\$ (.*?)\n(.*?)```", README, re.S)
    assert sessions, "the README shows a console session"
    for command, shown in sessions:
        main(agentfactory_args(command))
        captured = capsys.readouterr()
        printed = (captured.out + captured.err).splitlines()
        for line in shown.strip().splitlines():
            assert line in printed, f"{command}: {line!r} not in {printed}"
