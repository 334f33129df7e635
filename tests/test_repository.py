"""The repository's promises to newcomers and CI: the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helm import SET_UP

ROOT = Path(__file__).parent.parent


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [block.strip() for block in blocks]


def test_the_readme_gives_exactly_two_set_up_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert "agentfactory" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_the_test_command_sets_up_helm_as_the_chart_tests_expect() -> None:
    assert SET_UP in readme_commands()[1]


def test_no_package_named_operator_shadows_the_standard_library() -> None:
    assert not (ROOT / "operator" / "operator").exists()
    assert (ROOT / "operator" / "agentfactory" / "__init__.py").exists()
