"""The repository's promises to newcomers and CI: the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from testbed.apiserver import BUILD

from agentfactory.core.phases import Phase
from agentfactory.core.transitions import TRANSITIONS, Trigger

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


def test_the_test_command_builds_the_control_plane_the_tests_start() -> None:
    command = readme_commands()[1]
    build = f"bash {BUILD.relative_to(ROOT)}"
    assert build in command
    assert command.index(build) < command.index("pytest"), "built before the tests run"


def test_no_package_named_operator_shadows_the_standard_library() -> None:
    assert not (ROOT / "operator" / "operator").exists()
    assert (ROOT / "operator" / "agentfactory" / "__init__.py").exists()


def test_the_phase_diagram_shows_only_edges_of_the_transition_table() -> None:
    diagram = re.search(r"```mermaid\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert diagram, "the README's phase diagram"
    edges = re.findall(r"^\s*(\w+) --> (\w+) : (.+)$", diagram[1], re.M)
    assert len(edges) >= 20
    for source, target, triggers in edges:
        for trigger in triggers.split(" / "):
            edge = (Phase(source), Trigger(trigger.strip()), Phase(target))
            assert edge in TRANSITIONS, f"{source} --{trigger}--> {target} is not in the table"
    shown = {name for source, target, _ in edges for name in (source, target)}
    assert shown == {phase.value for phase in Phase}, "every phase is on the diagram"


def test_the_docs_link_only_to_files_that_exist() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "charts").rglob("README.md")),
                *sorted((ROOT / "sandbox-images").rglob("README.md"))]:  # fmt: skip
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links {target}"
