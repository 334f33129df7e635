"""The bounded tool loop: one fresh agent session, from the handoff contract to one result.

Each turn: check the bounds (turns, tokens, dollars, wall clock), call the model, run the
tools it asked for inside the workspace, send the results back. The session ends when the
model submits a valid answer through its role's `submit_*` tool, or at the first bound,
which the result names. Failures of the API (after the SDK's own retries) end it with a
`failed` result; the runner never ends without writing a result.

For the implementer, a submission is not taken at its word: the runner runs every check on
the workspace and, while the bounds allow, hands failures back; the patch in the result is
the workspace's git diff against the base commit.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from agentfactory.agent.llm import ModelBudgetError, ModelError, ModelKeyError
from agentfactory.agent.tools import ROLES, RoleSpec, dispatch
from agentfactory.agent.workspace import ToolError
from agentfactory.core.handoff import (
    AgentResult,
    HandoffContract,
    ImplementationOutput,
    PlanOutput,
    Role,
    StopReason,
    VerdictOutput,
)
from agentfactory.core.heartbeat import Heartbeat
from agentfactory.core.pricing import cost_usd
from agentfactory.core.task import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from anthropic.types import Message

    from agentfactory.agent.llm import Provider
    from agentfactory.agent.workspace import Workspace
    from agentfactory.context import Selection
    from agentfactory.core.handoff import CheckRun


def system_prompt(role: Role, instructions: str | None) -> str:
    """The role's prompt from package data, plus the factory's extra instructions."""
    text = resources.files("agentfactory.agent").joinpath(f"prompts/{role.value}.md").read_text()
    if instructions:
        text += f"\n\nInstructions from this factory:\n{instructions}\n"
    return text


def _section(title: str, body: str | list[str]) -> str:
    text = body if isinstance(body, str) else "\n".join(f"- {item}" for item in body)
    return f"# {title}\n\n{text.strip()}"


def render_context(workspace: Workspace, selection: Selection) -> str:
    """The selected files, each with why it was chosen, as they are in the workspace (or
    their outline, where the selection gave one; the agent can read the rest)."""
    blocks = []
    for pick in selection.picked:
        text = pick.outline
        if text is None:
            text = workspace.root.joinpath(pick.path).read_text(encoding="utf-8", errors="replace")
        blocks.append(f"## {pick.path} ({pick.reason})\n\n```\n{text}\n```")
    if selection.missing:
        blocks.append("Named but not found: " + ", ".join(selection.missing))
    return "\n\n".join(blocks)


def render_contract(contract: HandoffContract, constitution: str | None) -> str:
    """The first user message: the contract, in the order an engineer would read it."""
    ctx = contract.context
    sections: list[tuple[str, str | list[str] | None]] = [
        ("Project principles (read first)", constitution),
        ("Goal", contract.goal),
        ("Acceptance criteria", contract.acceptance_criteria),
        ("Non-goals", contract.non_goals),
        ("Scope (files that may change)", contract.scope),
        ("Protected (never change)", contract.protected_paths),
        (
            "Context",
            [f"file: {f}" for f in ctx.files]
            + [f"doc: {d}" for d in ctx.docs]
            + [f"decision: {d}" for d in ctx.decisions],
        ),
        ("Checks (must pass)", [f"{c.name}: `{c.command}`" for c in contract.checks]),
        ("Stop and hand back when", contract.stop_when),
        (
            "Plan",
            json.dumps(contract.plan.model_dump(by_alias=True), indent=2)
            if contract.plan
            else None,
        ),
        (
            "The implementer's note on this patch",
            json.dumps(contract.implementation.model_dump(by_alias=True), indent=2)
            if contract.implementation
            else None,
        ),
        (
            "What CI found of the patch's tests (weigh every weakened test)",
            contract.proof.lines() if contract.proof else None,
        ),
        ("Objections to the previous attempt (address every one)", contract.feedback),
    ]
    return "\n\n".join(_section(title, body) for title, body in sections if body)


@dataclass
class Runner:
    """One agent session under the contract's limits."""

    contract: HandoffContract
    workspace: Workspace
    provider: Provider
    constitution: str | None = None
    clock: Callable[[], float] = time.monotonic
    selection: Selection | None = None
    progress: Callable[[Usage, int], None] | None = None
    """Called with the usage so far and the turns after every model call: an attempt killed
    before its result (deadline, OOM, eviction) is still charged what it used."""
    heartbeat: Callable[[Heartbeat], None] | None = None
    """Called after every turn's tools ran, for the people watching."""
    spec: RoleSpec = field(init=False)
    tools: list[dict[str, Any]] = field(init=False)
    usage: Usage = field(default_factory=Usage, init=False)
    turns: int = field(default=0, init=False)
    _last_usage: Usage | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.spec = ROLES[self.contract.role]
        self.tools = self.spec.definitions()  # once: a schema build per turn is wasted work

    def run(self) -> AgentResult:
        started = self.clock()
        limits = self.contract.limits
        opening = render_contract(self.contract, self.constitution)
        if self.selection is not None and self.selection.picked:
            context = render_context(self.workspace, self.selection)
            opening += f"\n\n# Selected context (read these first)\n\n{context}"
        messages: list[dict[str, Any]] = [{"role": "user", "content": opening}]
        system = [
            {
                "type": "text",
                "text": system_prompt(self.contract.role, self.contract.instructions),
                "cache_control": {"type": "ephemeral"},
            }
        ]
        last_problem = ""
        while True:
            remaining = limits.deadline_seconds - (self.clock() - started)
            bound = self._bound_reached(remaining)
            if bound is not None:
                reason, message = bound
                return self._result("stopped", reason, f"{message}. {last_problem}".strip())
            try:
                reply = self.provider.create(
                    model=self.contract.model,
                    system=system,
                    messages=_with_breakpoint(
                        _within(
                            messages,
                            self._prompt_tokens(),
                            int(limits.window_tokens * WINDOW_SHARE),
                        )
                    ),
                    tools=self.tools,
                    max_tokens=limits.max_output_tokens,
                    timeout=remaining,
                )
            except ModelKeyError as exc:
                return self._result("failed", "api-key", str(exc))
            except ModelBudgetError as exc:
                return self._result("stopped", "budget", str(exc))
            except ModelError as exc:
                return self._result("failed", "api-error", str(exc))
            self._count(reply)
            if reply.stop_reason == "refusal":
                said = " ".join(b.text for b in reply.content if b.type == "text").strip()
                return self._result("failed", "refusal", f"the model refused: {said}".strip())
            if reply.stop_reason == "pause_turn":  # the API paused a long turn: send it back
                messages.append({"role": "assistant", "content": _blocks(reply)})
                continue
            cut = reply.stop_reason == "max_tokens"
            # A reply cut at max_tokens may end in a tool call whose input is cut too: only its
            # text is kept, and the model is asked to go on.
            blocks = [b for b in _blocks(reply) if not (cut and b["type"] == "tool_use")]
            if blocks:
                messages.append({"role": "assistant", "content": blocks})
            if cut:
                _tell(messages, "Your reply was cut at max_tokens. Go on, in shorter steps.")
                continue
            answer, results, last_problem = self._handle(reply)
            if self.heartbeat is not None:
                tools = tuple(b.name for b in reply.content if b.type == "tool_use")
                self.heartbeat(Heartbeat(
                    role=self.contract.role.value, turn=self.turns, max_turns=limits.max_turns,
                    tools=tools, tokens=self.usage.total_tokens, cost_usd=self.usage.cost_usd,
                    elapsed_seconds=self.clock() - started,
                ))  # fmt: skip
            if answer is not None:
                return self._result("completed", "completed", "", answer)
            if not results:
                # A text-only (or empty) turn: the answer must come through the submit tool.
                _tell(messages, f"Call {self.spec.submit} with your answer.")
                continue
            messages.append({"role": "user", "content": results})

    def _bound_reached(self, remaining: float) -> tuple[StopReason, str] | None:
        limits = self.contract.limits
        if remaining <= 0:
            return "deadline", f"the deadline of {limits.deadline_seconds:g}s passed"
        if self.turns >= limits.max_turns:
            return "max-turns", f"{self.turns} turns reached maxTurns {limits.max_turns}"
        if self.usage.total_tokens >= limits.max_tokens:
            return "max-tokens", f"{self.usage.total_tokens} tokens reached {limits.max_tokens}"
        if limits.max_cost_usd is not None and self.usage.cost_usd >= limits.max_cost_usd:
            return "budget", f"${self.usage.cost_usd:.4f} reached ${limits.max_cost_usd:.4f}"
        return None

    def _prompt_tokens(self) -> int:
        """The last request's prompt, in the API's tokens (0 before the first)."""
        last = self._last_usage
        return 0 if last is None else (
            last.input_tokens + last.cache_creation_tokens + last.cache_read_tokens)  # fmt: skip

    def _count(self, reply: Message) -> None:
        self.turns += 1
        used = reply.usage
        usage = Usage(
            input_tokens=used.input_tokens,
            output_tokens=used.output_tokens,
            cache_creation_tokens=used.cache_creation_input_tokens or 0,
            cache_read_tokens=used.cache_read_input_tokens or 0,
        )
        usage.cost_usd = cost_usd(self.contract.model, usage)
        self._last_usage = usage
        self.usage = self.usage + usage
        if self.progress is not None:
            self.progress(self.usage, self.turns)

    def _handle(self, reply: Message) -> tuple[BaseModel | None, list[dict[str, Any]], str]:
        """Run the tools the reply asks for; return (answer, tool results, last problem)."""
        results: list[dict[str, Any]] = []
        problem = ""
        for block in reply.content:
            if block.type != "tool_use":
                continue
            args = block.input if isinstance(block.input, dict) else {}
            try:
                if block.name == self.spec.submit:
                    return self._submit(args), [], ""
                base = self.contract.base_sha
                text = dispatch(self.workspace, self.spec, block.name, args, base)
                results.append({"type": "tool_result", "tool_use_id": block.id, "content": text})
            except ToolError as refusal:
                problem = f"Last refusal: {refusal}"
                results.append(
                    {"type": "tool_result", "tool_use_id": block.id, "content": str(refusal),
                     "is_error": True}
                )  # fmt: skip
        return None, results, problem

    def _submit(self, args: dict[str, Any]) -> BaseModel:
        """Validate an answer; for the implementer, also run the checks. Raises ToolError."""
        try:
            answer = self.spec.output.model_validate(args)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(
                f"the answer does not match the schema: {details}; submit again"
            ) from None
        if isinstance(answer, ImplementationOutput):
            runs = self.workspace.run_checks()
            failed = failures_report(runs)
            if failed is not None and self.turns < self.contract.limits.max_turns:
                raise ToolError(failed)
            answer.checks = runs
        return answer

    def _result(
        self,
        status: Literal["completed", "stopped", "failed"],
        stopped_by: StopReason,
        message: str,
        answer: BaseModel | None = None,
    ) -> AgentResult:
        replay = self.provider.replay
        return session_result(self.contract, self.workspace, self.selection, status=status,
                              stopped_by=stopped_by, message=message, usage=self.usage,
                              turns=self.turns, replay=replay, answer=answer)  # fmt: skip


def session_result(
    contract: HandoffContract, workspace: Workspace, selection: Selection | None, *,
    status: Literal["completed", "stopped", "failed"], stopped_by: StopReason, message: str,
    usage: Usage, turns: int, replay: bool, answer: BaseModel | None = None,
) -> AgentResult:  # fmt: skip
    """What a session hands back, whatever its engine: the role's answer and, for the
    implementer, the workspace's own diff against the base (never what the model claims)."""
    result = AgentResult(
        role=contract.role, status=status, stopped_by=stopped_by, message=message, usage=usage,
        turns=turns, model=contract.model, replay=replay,
        context=[f"{p.path} ({p.reason})" for p in selection.picked] if selection else [],
    )  # fmt: skip
    if isinstance(answer, PlanOutput):
        result.plan = answer
    elif isinstance(answer, VerdictOutput):
        result.verdict = answer
    elif isinstance(answer, ImplementationOutput):
        result.implementation = answer
    if contract.role == Role.IMPLEMENTER:
        try:
            result.diff = workspace.full_diff(contract.base_sha)
        except ToolError as exc:
            result.message = f"{result.message} (no diff: {exc})".strip()
    return result


def failures_report(runs: list[CheckRun]) -> str | None:
    """What to tell the agent of the checks that did not pass, or None when all did."""
    failing = [run for run in runs if run.status != "passed"]
    if not failing:
        return None
    report = "\n".join(f"- {r.name} ({r.status}):\n{r.output_tail[-3000:]}" for r in failing)
    return f"the factory ran the checks and these failed:\n{report}\nfix them, then submit again"


#: The share of the context window a prompt may fill before old tool results make way.
WINDOW_SHARE = 0.6
#: Tool results this short are kept however old (a refusal, a check's verdict).
SHORT_RESULT = 400


def _within(messages: list[dict[str, Any]], prompt: int, room: int) -> list[dict[str, Any]]:
    """*messages* with the oldest long tool results replaced by a line that says what they
    were, while the conversation is larger than *room* tokens. *prompt* is the size the API
    counted for the last request; what was sent since is estimated at four characters a
    token. Elided results stay elided (they are replaced in *messages*), so the cached
    prefix breaks once per elision, not on every turn."""
    grown = sum(len(json.dumps(m["content"])) for m in messages[-2:]) // 4
    excess = prompt + grown - room
    for message in messages[:-1]:  # the newest turn is what the model is answering
        if excess <= 0:
            break
        if message["role"] != "user" or isinstance(message["content"], str):
            continue
        for block in message["content"]:
            content = block.get("content") if block.get("type") == "tool_result" else None
            if isinstance(content, str) and len(content) > SHORT_RESULT and excess > 0:
                block["content"] = (f"[an earlier tool result of {len(content)} characters was"
                                    " dropped to keep the conversation within the context"
                                    " window: read the file again or rerun the command if you"
                                    " need it]")  # fmt: skip
                excess -= (len(content) - len(block["content"])) // 4
    return messages


def _content_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A turn's content as blocks (the API takes text as a shorthand for one text block)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _with_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """*messages* with a cache breakpoint on the last block: the conversation so far is
    written to the cache, and read from it by the next turn, which repeats it whole. Only
    this request carries it (the API takes four breakpoints at most)."""
    last = messages[-1]
    blocks = _content_blocks(last["content"])
    marked = [*blocks[:-1], {**blocks[-1], "cache_control": {"type": "ephemeral"}}]
    return [*messages[:-1], {**last, "content": marked}]


def _tell(messages: list[dict[str, Any]], text: str) -> None:
    """Say *text* to the model next: a new user turn after its own, or added to the last user
    turn when it wrote nothing (the API refuses an empty turn, and two turns of one role)."""
    block = {"type": "text", "text": text}
    last = messages[-1]
    if last["role"] == "assistant":
        messages.append({"role": "user", "content": [block]})
        return
    last["content"] = [*_content_blocks(last["content"]), block]


def _blocks(reply: Message) -> list[dict[str, Any]]:
    """The reply's content as request blocks (what the next request must carry back)."""
    out: list[dict[str, Any]] = []
    for block in reply.content:
        if block.type == "text":
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    return out
