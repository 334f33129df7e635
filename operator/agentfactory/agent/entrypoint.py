"""The agent image's entrypoints: read `/factory/input`, run one session (or the CI checks),
hand back the result.

The exit code is 0 when the session completed with a valid answer and 1 otherwise; either
way a result file is written, so the operator always learns what happened. Only a call that
cannot be understood at all (a role that contradicts the contract) exits 2 without one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agentfactory.agent.llm import AnthropicProvider, Provider, ReplayProvider
from agentfactory.agent.runner import Runner, session_result
from agentfactory.agent.tools import workspace_for
from agentfactory.agent.workspace import Workspace
from agentfactory.context import CONSTITUTION_FILES, select_context
from agentfactory.core.handoff import (
    CHECK_LIST,
    RESULT_MARKER,
    SUMMARY_NAME,
    AgentResult,
    CheckReport,
    HandoffContract,
    ImplementationOutput,
    Role,
    summary_of,
)
from agentfactory.core.task import Proof

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.base import Model
    from agentfactory.core.heartbeat import Heartbeat
    from agentfactory.core.task import Usage


def publish(output: Path, result: Model) -> None:
    """Hand the result back through every channel of the pod contract: the result file, the
    summary that becomes the container's termination message, and one marked log line with
    the whole result (the operator reads the last such line through `pods/log`)."""
    text = result.model_dump_json(by_alias=True)  # every field: required ones may be null
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    (output.parent / SUMMARY_NAME).write_text(summary_of(text), encoding="utf-8")
    print(f"{RESULT_MARKER}{text}", flush=True)  # noqa: T201 - the pod's log is a channel


def run_checks(*, input_dir: Path, workspace: Path, output: Path) -> int:
    """The CI pod: run `checks.json` from the input directory on the workspace as it is.
    A failing check is a result, not a failure: the exit code is 0 whenever they all ran."""
    try:
        checks = CHECK_LIST.validate_json((input_dir / "checks.json").read_text("utf-8"))
    except (OSError, ValidationError) as exc:
        print(f"cannot read {input_dir / 'checks.json'}: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    runs = Workspace(root=workspace, checks=checks).run_checks()
    report = CheckReport(checks=runs)
    settings = input_dir / "prove.json"
    if settings.is_file() and all(run.status == "passed" for run in runs):
        from agentfactory.agent.prove import prove

        wanted = json.loads(settings.read_text(encoding="utf-8"))
        try:
            report.proof = prove(workspace, list(wanted["testPaths"]), wanted.get("command"))
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            report.proof = Proof(verdict="unproven", message=f"the proof could not run: {exc}")
        report.proof.required = wanted.get("mode") == "required"
    publish(output, report)
    return 0


def _contract(role: str, input_dir: Path, output: Path) -> HandoffContract | int:
    """The contract in *input_dir*, or the exit code when there is none to work on (a result
    saying why is written when the contract cannot be read)."""
    try:
        contract = HandoffContract.model_validate_json(
            (input_dir / "contract.json").read_text(encoding="utf-8")
        )
    except (OSError, ValidationError) as exc:
        message = f"cannot read {input_dir / 'contract.json'}: {exc}"
        publish(output, AgentResult(role=Role(role), status="failed",
                                    stopped_by="invalid-input", message=message))  # fmt: skip
        print(message, file=sys.stderr)  # noqa: T201 - the pod's log
        return 1
    if contract.role.value != role:
        print(  # noqa: T201 - the pod's log
            f"--role {role} but the contract says role '{contract.role.value}'; they must match",
            file=sys.stderr,
        )
        return 2
    return contract


def collect_result(*, role: str, input_dir: Path, workspace: Path, output: Path) -> int:
    """The step after an agent image (`engine: image`): read the result it wrote to *output*,
    as the pod contract says, and hand it back checked. The image's word is taken for its
    answer and usage only: the role is the contract's, the implementer's diff is the
    workspace's own against the base, and the checks are run here, on the workspace as the
    image left it (this step holds no model key)."""
    contract = _contract(role, input_dir, output)
    if isinstance(contract, int):
        return contract
    tree = workspace_for(contract, workspace)
    try:
        claimed = AgentResult.model_validate_json(output.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        said = f"the agent image wrote no valid result at {output}: {exc}"
        claimed = AgentResult(role=contract.role, status="failed", stopped_by="no-result",
                              message=said)  # fmt: skip
    if claimed.role != contract.role:
        claimed = AgentResult(role=contract.role, status="failed", stopped_by="no-result",
                              message=f"the agent image answered as the {claimed.role.value},"
                                      f" not the {contract.role.value}")  # fmt: skip
    answer = claimed.plan or claimed.verdict or claimed.implementation
    if claimed.status == "completed" and answer is None:
        claimed.status, claimed.stopped_by = "failed", "no-result"
        claimed.message = f"the agent image completed without the {role}'s answer"
    if isinstance(answer, ImplementationOutput) and claimed.status == "completed":
        answer.checks = tree.run_checks()
    result = session_result(
        contract, tree, None, status=claimed.status, stopped_by=claimed.stopped_by,
        message=claimed.message, usage=claimed.usage, turns=claimed.turns,
        replay=claimed.replay, answer=answer if claimed.status == "completed" else None,
    )  # fmt: skip
    publish(output, result)
    return 0 if result.status == "completed" else 1


def run_agent(
    *, role: str, input_dir: Path, workspace: Path, output: Path, replay: Path | None,
    engine: str = "builtin",
) -> int:  # fmt: skip
    """Run the session the files describe (with our runner or Claude Code); returns the
    process exit code."""
    contract = _contract(role, input_dir, output)
    if isinstance(contract, int):
        return contract
    constitution_file = input_dir / "constitution.md"
    constitution = constitution_file.read_text() if constitution_file.is_file() else None
    provider: Provider = ReplayProvider.load(replay) if replay else AnthropicProvider()
    tree = workspace_for(contract, workspace)
    selection = None
    if contract.limits.context_tokens:
        # The constitution is already in the contract; select among the repository's files.
        selection = select_context(
            workspace,
            goal=contract.goal,
            scope=contract.scope,
            files=contract.context.files,
            budget_tokens=contract.limits.context_tokens,
            constitution=() if constitution else CONSTITUTION_FILES,
        )
    summary = output.parent / SUMMARY_NAME
    summary.parent.mkdir(parents=True, exist_ok=True)

    def so_far(usage: Usage, turns: int) -> None:
        # The termination message the kubelet reads however the container ends: until the
        # result replaces it, it says what the session has used.
        running = {"role": role, "status": "running", "usage": usage.model_dump(by_alias=True),
                   "turns": turns}  # fmt: skip
        summary.write_text(json.dumps(running, separators=(",", ":")), encoding="utf-8")

    def beat(heartbeat: Heartbeat) -> None:
        print(heartbeat.line(), flush=True)  # noqa: T201 - the pod's log is a channel

    if engine == "claude-code":
        from agentfactory.agent.claude_code import ClaudeCodeSession

        result = ClaudeCodeSession(contract, tree, constitution=constitution, selection=selection,
                                   progress=so_far, heartbeat=beat).run()  # fmt: skip
    else:
        result = Runner(contract, tree, provider, constitution=constitution, selection=selection,
                        progress=so_far, heartbeat=beat).run()  # fmt: skip
    publish(output, result)
    return 0 if result.status == "completed" else 1
