"""Claude Code as an engine: one session of the Claude Code CLI, through the Claude Agent SDK,
under the same handoff contract, rights and bounds as the builtin runner.

What Claude Code is given: its own system prompt with the role's prompt appended, the
contract (and the selected context) as the first message, and the role's output model as
the JSON schema of its structured output. What it may do is decided here, call by call
(`can_use_tool`): every role reads inside the workspace (Read, Grep, Glob); the implementer
also writes inside the scope and never a protected path (Write, Edit), and runs the checks
through the factory's own tool, which runs them with a scrubbed environment. Bash and every
other tool are left out: a shell would hand the checks' code the CLI's environment. No
settings file is read (`setting_sources=[]`), so a repository's `.claude/settings.json` can
neither grant a tool nor run a hook.

Claude Code is not trusted to police itself: when it stops, the factory runs every check on
the workspace and hands failures back in the same session while the turns last; the diff is
the workspace's own, and the guardrails judge it as for any engine.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from agentfactory.agent.runner import (
    failures_report,
    render_context,
    render_contract,
    session_result,
    system_prompt,
)
from agentfactory.agent.tools import ROLES
from agentfactory.agent.workspace import ToolError
from agentfactory.core.handoff import AgentResult, ImplementationOutput, Role, StopReason
from agentfactory.core.heartbeat import Heartbeat
from agentfactory.core.pricing import cost_usd
from agentfactory.core.schema import inline_schema
from agentfactory.core.task import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from claude_agent_sdk import ClaudeSDKClient, ResultMessage

    from agentfactory.agent.workspace import Workspace
    from agentfactory.context import Selection
    from agentfactory.core.handoff import HandoffContract

READ_TOOLS = ("Read", "Grep", "Glob")
WRITE_TOOLS = ("Write", "Edit")
#: The factory's tool that runs the checks (an in-process MCP server named `factory`).
CHECKS_TOOL = "mcp__factory__run_checks"
#: How Claude Code's tools stand in for the ones the role prompts name.
ENGINE_NOTE = """
In this session your tools are Claude Code's: read with Read, Grep and Glob{writes}. Where
these instructions name list_files, read_file or search, use those; where they name a
submit tool, give your answer as the structured output instead, once, at the end.
"""
WRITES = (
    "; change files with Write and Edit (inside the scope only); run the checks with"
    f" {CHECKS_TOOL} (there is no shell); where these instructions name write_file,"
    " replace_in_file, run_command or shell, use those"
)
#: Why a Claude Code turn failed, as the API said it (AssistantMessage.error).
KEY_ERRORS = ("authentication_failed",)


def cli_env(workspace: Path) -> dict[str, str]:
    """The CLI's environment beyond the process's own: the model API as the runner has it,
    no traffic but the Messages API, and a writable home for its session files."""
    home = Path(os.environ.get("HOME") or workspace.parent / "home")
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # As the builtin runner's SDK: a few retries of 429, 5xx and 529, not ten.
        "CLAUDE_CODE_MAX_RETRIES": "4",
    }


def refusal(workspace: Workspace, role: Role, name: str, args: dict[str, Any]) -> str | None:
    """Why the role may not make this call (a message for the model), or None."""
    spec = ROLES[role]
    if name == CHECKS_TOOL and spec.writable:
        return None
    if name not in READ_TOOLS and not (spec.writable and name in WRITE_TOOLS):
        allowed = [*READ_TOOLS, *((*WRITE_TOOLS, CHECKS_TOOL) if spec.writable else ())]
        return f"{name} is not available to the {role.value}; use {', '.join(allowed)}"
    path = args.get("file_path") or args.get("path") or "."
    try:
        relative = _inside(workspace, str(path))
        if name in WRITE_TOOLS:
            workspace.check_writable(relative)
        else:
            workspace.resolve(relative)
    except ToolError as refused:
        return str(refused)
    return None


def _inside(workspace: Workspace, path: str) -> str:
    """*path* (Claude Code gives absolute ones) relative to the workspace, or refuse."""
    given = Path(path)
    if not given.is_absolute():
        return path
    try:
        return given.relative_to(workspace.root).as_posix() or "."
    except ValueError:
        raise ToolError(
            f"{path} is outside the workspace {workspace.root}; stay inside it"
        ) from None


@dataclass
class ClaudeCodeSession:
    """One Claude Code session under the contract's limits."""

    contract: HandoffContract
    workspace: Workspace
    constitution: str | None = None
    selection: Selection | None = None
    progress: Callable[[Usage, int], None] | None = None
    heartbeat: Callable[[Heartbeat], None] | None = None
    clock: Callable[[], float] = time.monotonic
    env: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage, init=False)
    turns: int = field(default=0, init=False)
    _settled: Usage = field(default_factory=Usage, init=False)
    _seen: set[str] = field(default_factory=set, init=False)
    _stderr: list[str] = field(default_factory=list, init=False)

    def run(self) -> AgentResult:
        started = self.clock()
        deadline = self.contract.limits.deadline_seconds
        try:
            return asyncio.run(asyncio.wait_for(self._session(started), deadline))
        except TimeoutError:
            return self._result("stopped", "deadline", f"the deadline of {deadline:g}s passed")

    # -- the session -------------------------------------------------------------------

    def _options(self) -> Any:
        from claude_agent_sdk import ClaudeAgentOptions, create_sdk_mcp_server, tool

        role, limits = self.contract.role, self.contract.limits
        spec = ROLES[role]
        tools = [*READ_TOOLS, *(WRITE_TOOLS if spec.writable else ())]
        servers: dict[str, Any] = {}
        if spec.writable:

            @tool("run_checks", "Run every check of the task on the workspace as it is.", {})
            async def run_checks(args: dict[str, Any]) -> dict[str, Any]:
                del args
                runs = await asyncio.to_thread(self.workspace.run_checks)
                text = "\n".join(f"- {r.name} ({r.status}, exit {r.exit_code}):\n"
                                 f"{r.output_tail[-3000:]}" for r in runs)  # fmt: skip
                return {"content": [{"type": "text", "text": text or "no checks"}]}

            servers["factory"] = create_sdk_mcp_server("factory", tools=[run_checks])
        prompt = system_prompt(role, self.contract.instructions) + ENGINE_NOTE.format(
            writes=WRITES if spec.writable else "")  # fmt: skip
        return ClaudeAgentOptions(
            cwd=str(self.workspace.root),
            model=self.contract.model,
            tools=tools,
            allowed_tools=[],
            setting_sources=[],
            permission_mode="default",
            can_use_tool=self._permit,
            mcp_servers=servers,
            system_prompt={"type": "preset", "preset": "claude_code", "append": prompt},
            output_format={"type": "json_schema", "schema": inline_schema(spec.output)},
            max_turns=limits.max_turns,
            max_budget_usd=limits.max_cost_usd,
            env={**cli_env(self.workspace.root), **self.env},
            stderr=self._stderr.append,
        )

    async def _permit(self, name: str, args: dict[str, Any], context: Any) -> Any:
        from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny

        del context
        said = refusal(self.workspace, self.contract.role, name, args)
        return PermissionResultAllow() if said is None else PermissionResultDeny(message=said)

    async def _session(self, started: float) -> AgentResult:
        from claude_agent_sdk import ClaudeSDKClient

        prompt = render_contract(self.contract, self.constitution)
        if self.selection is not None and self.selection.picked:
            context = render_context(self.workspace, self.selection)
            prompt += f"\n\n# Selected context (read these first)\n\n{context}"
        client = ClaudeSDKClient(self._options())
        await client.connect()
        try:
            while True:
                await client.query(prompt)
                outcome = await self._receive(client, started)
                if isinstance(outcome, AgentResult):
                    return outcome
                answer, problem = await asyncio.to_thread(self._judge, outcome)
                if problem is None:
                    return self._result("completed", "completed", "", answer)
                most = self.contract.limits.max_turns
                if self.turns >= most:
                    said = f"{self.turns} turns reached maxTurns {most}. {problem}"
                    return self._result("stopped", "max-turns", said)
                prompt = problem  # the same session goes on, with what it must fix
        finally:
            await client.disconnect()

    async def _receive(self, client: ClaudeSDKClient, started: float) -> Any:
        """Read the session's messages up to its result; an AgentResult when it must end."""
        from claude_agent_sdk import AssistantMessage, ResultMessage

        async for message in client.receive_response():
            if isinstance(message, AssistantMessage):
                if message.error is not None:
                    text = " ".join(getattr(b, "text", "") for b in message.content).strip()
                    said = self._said(f"{message.error}: {text}" if text else message.error)
                    if message.error == "billing_error":  # the gateway: the budget is spent
                        return self._result("stopped", "budget", said)
                    if message.error in KEY_ERRORS:
                        said += ("; put a valid key in the Secret spec.agents.apiKeySecretRef"
                                 " names (locally: ANTHROPIC_API_KEY)")  # fmt: skip
                        return self._result("failed", "api-key", said)
                    return self._result("failed", "api-error", said)
                self._count(message, started)
                if self.usage.total_tokens >= self.contract.limits.max_tokens:
                    await client.interrupt()
                    return self._result("stopped", "max-tokens",
                                        f"{self.usage.total_tokens} tokens reached"
                                        f" {self.contract.limits.max_tokens}")  # fmt: skip
            elif isinstance(message, ResultMessage):
                return self._ended(message)
        return self._result("failed", "api-error", self._said("the session ended without a result"))

    def _said(self, what: str) -> str:
        tail = "".join(self._stderr)[-800:].strip()
        return f"Claude Code: {what}" + (f" ({tail})" if tail else "")

    def _count(self, message: Any, started: float) -> None:
        """Count one model call (Claude Code reports each of its blocks with the call's usage)."""
        key = message.message_id or str(id(message))
        if key in self._seen or not message.usage:
            return
        self._seen.add(key)
        self.turns += 1
        # A turn's usage as the stream began (its output not yet counted): an estimate until
        # the query's result gives the whole.
        self.usage = self.usage + self._priced(message.usage)
        if self.progress is not None:
            self.progress(self.usage, self.turns)
        if self.heartbeat is not None:
            tools = tuple(b.name for b in message.content if hasattr(b, "input"))
            self.heartbeat(Heartbeat(
                role=self.contract.role.value, turn=self.turns,
                max_turns=self.contract.limits.max_turns, tools=tools,
                tokens=self.usage.total_tokens, cost_usd=self.usage.cost_usd,
                elapsed_seconds=self.clock() - started,
            ))  # fmt: skip

    def _priced(self, used: dict[str, Any]) -> Usage:
        usage = Usage(
            input_tokens=int(used.get("input_tokens") or 0),
            output_tokens=int(used.get("output_tokens") or 0),
            cache_creation_tokens=int(used.get("cache_creation_input_tokens") or 0),
            cache_read_tokens=int(used.get("cache_read_input_tokens") or 0),
        )
        usage.cost_usd = cost_usd(self.contract.model, usage)
        return usage

    def _ended(self, message: ResultMessage) -> Any:
        """The session's result message: the structured answer, or why there is none. Its
        usage, the whole of the query's, replaces the estimate counted turn by turn."""
        if message.usage:
            self._settled = self._settled + self._priced(message.usage)
            self.usage = self._settled
        limits = self.contract.limits
        if message.subtype == "error_max_turns":
            said = f"Claude Code stopped at maxTurns {limits.max_turns}"
            return self._result("stopped", "max-turns", said)
        if message.subtype == "error_max_budget_usd":
            said = f"Claude Code stopped at ${limits.max_cost_usd}"
            return self._result("stopped", "budget", said)
        if message.is_error:
            said = message.result or "; ".join(message.errors or []) or message.subtype
            return self._result("failed", "api-error", self._said(said))
        return message.structured_output

    def _judge(self, output: Any) -> tuple[BaseModel | None, str | None]:
        """(the answer, None) when it stands; else (None, what to tell Claude Code)."""
        spec = ROLES[self.contract.role]
        try:
            answer = spec.output.model_validate(output if isinstance(output, dict) else {})
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
                                for e in exc.errors())  # fmt: skip
            return (
                None,
                f"Your structured output does not match the schema: {details}. Answer again.",
            )
        if isinstance(answer, ImplementationOutput):
            runs = self.workspace.run_checks()
            failed = failures_report(runs)
            if failed is not None:
                return None, f"{failed} (as your structured output)"
            answer.checks = runs
        return answer, None

    def _result(
        self,
        status: Literal["completed", "stopped", "failed"],
        stopped_by: StopReason,
        message: str,
        answer: BaseModel | None = None,
    ) -> AgentResult:
        return session_result(self.contract, self.workspace, self.selection, status=status,
                              stopped_by=stopped_by, message=message, usage=self.usage,
                              turns=self.turns, replay=False, answer=answer)  # fmt: skip
