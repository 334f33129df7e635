"""The agent pod contract: what a stage's agent reads (`HandoffContract`) and writes
(`AgentResult`).

Public and documented: any image that reads `/factory/input/contract.json` and writes this
result can serve a role. The role outputs (`PlanOutput`, `VerdictOutput`,
`ImplementationOutput`) are also the schemas of the tools through which a model submits its
answer, so a malformed answer is refused before it ever reaches the pipeline.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field, TypeAdapter

from agentfactory.core.base import Model
from agentfactory.core.common import Check
from agentfactory.core.globs import Glob
from agentfactory.core.phases import Stage, Verdict
from agentfactory.core.task import Finding, ImplementationNote, Proof, TaskContext, Usage


class Role(StrEnum):
    """The four agent roles."""

    PLANNER = "planner"
    PLAN_REVIEWER = "plan-reviewer"
    IMPLEMENTER = "implementer"
    CODE_REVIEWER = "code-reviewer"


ROLE_OF_STAGE: dict[Stage, Role] = {
    Stage.PLAN: Role.PLANNER,
    Stage.PLAN_REVIEW: Role.PLAN_REVIEWER,
    Stage.IMPLEMENT: Role.IMPLEMENTER,
    Stage.CODE_REVIEW: Role.CODE_REVIEWER,
}


class Limits(Model):
    """Bounds of one stage attempt; the runner stops cleanly at the first one reached."""

    max_turns: int = Field(default=40, ge=1, le=1000)
    """Model calls (turns of the tool loop)."""
    max_tokens: int = Field(default=1_000_000, ge=1)
    """Tokens this attempt may use: the stage cap or the task's remaining budget, whichever
    is smaller."""
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Dollars this attempt may spend (the task's remaining budget)."""
    deadline_seconds: float = Field(default=1800, gt=0)
    """Wall-clock seconds for the whole attempt."""
    max_output_tokens: int = Field(default=8192, ge=1, le=128000)
    """`max_tokens` of each model call."""
    command_timeout_seconds: int = Field(default=600, ge=1)
    """Timeout of one command the agent runs (a check's own timeout wins)."""
    context_tokens: int = Field(default=20_000, ge=0)
    """Tokens of selected files shown in the first message (0 shows none)."""
    window_tokens: int = Field(default=200_000, ge=1000)
    """The model's context window: once a prompt passes 60% of it, the oldest tool results
    make way (each replaced by a line saying what it was)."""


class PlanOutput(Model):
    """The planner's answer."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    """What will change and why, in a few sentences."""
    steps: list[str] = Field(min_length=1)
    """Ordered steps, each small enough to check."""
    files_in_scope: list[str] = Field(default_factory=list)
    """Files the change will touch."""
    risky_interfaces: list[str] = Field(default_factory=list)
    """Public interfaces, schemas or behaviours the change could break."""
    tests_to_add_first: list[str] = Field(default_factory=list)
    """Tests that should fail before the change and pass after it."""
    open_questions: list[str] = Field(default_factory=list)
    """What the spec leaves unclear."""


class VerdictOutput(Model):
    """A reviewer's answer."""

    model_config = ConfigDict(extra="ignore")

    verdict: Verdict
    """APPROVE or REQUEST_CHANGES."""
    summary: str = Field(min_length=1)
    """The reasoning in brief."""
    findings: list[Finding] = Field(default_factory=list)
    """Findings with file, line, severity and what would change the verdict."""


class CheckRun(Model):
    """A check as the runner ran it (never as the model claims it)."""

    name: str
    """Check name."""
    command: str
    """The command run."""
    exit_code: int | None
    """Exit code; None when it did not finish (timeout) or did not run."""
    status: Literal["passed", "failed", "timeout", "skipped"]
    """Outcome."""
    output_tail: str = ""
    """The last lines of its output."""


class CheckReport(Model):
    """What a sandbox CI run hands back: every check as it ran."""

    checks: list[CheckRun]
    """The runs, in the order of the factory's checks."""
    proof: Proof | None = None
    """Break/fix and weakening, when the factory asks for them and the checks passed."""


CHECK_LIST: TypeAdapter[list[Check]] = TypeAdapter(list[Check])
"""The CI pod's input (`checks.json`): the checks to run."""


class ImplementationOutput(Model):
    """The implementer's answer; `checks` is filled by the runner, not the model."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1)
    """What changed."""
    not_found: list[str] = Field(default_factory=list)
    """What the implementer looked for and could not find."""
    skipped: list[str] = Field(default_factory=list)
    """What it deliberately did not do, and why."""
    rollback: str = Field(min_length=1)
    """The smallest way to undo the change."""
    checks: list[CheckRun] = Field(default_factory=list)
    """The factory's checks, run by the runner on the final workspace."""


class HandoffContract(Model):
    """Everything one stage's agent is given (mounted read-only as `contract.json`)."""

    task: str = Field(min_length=1, max_length=63)
    """Task name."""
    role: Role
    """Which role runs."""
    goal: str = Field(min_length=1)
    """One observable behaviour the change delivers."""
    acceptance_criteria: list[str] = Field(min_length=1)
    """When the task is done."""
    non_goals: list[str] = Field(default_factory=list)
    """What the change must not do."""
    context: TaskContext = Field(default_factory=TaskContext)
    """Files, docs and decisions named by the task."""
    scope: list[Glob] = Field(min_length=1)
    """Files the implementer may change."""
    checks: list[Check] = Field(default_factory=list)
    """Checks that must pass (factory's, then task's)."""
    stop_when: str | None = None
    """When to stop and hand back."""
    protected_paths: list[Glob] = Field(default_factory=list)
    """Paths no agent may change."""
    base_sha: str | None = None
    """The commit the workspace started from; the patch is the diff against it."""
    model: str = Field(min_length=1)
    """Model to use."""
    instructions: str | None = None
    """Extra instructions for this role from the factory."""
    limits: Limits = Field(default_factory=Limits)
    """Bounds of this attempt."""
    feedback: str | None = None
    """Objections from the previous attempt (review findings, CI output, guardrails)."""
    plan: PlanOutput | None = None
    """The plan, for every role after the planner: all of it (risky interfaces, the tests to
    add first, the questions a person answered by approving)."""
    implementation: ImplementationNote | None = None
    """For the code reviewer: what the implementer said of the patch under review."""
    proof: Proof | None = None
    """For the code reviewer: what CI found of the patch's tests (which prove the fix on the
    base and the head, and which were weakened)."""


StopReason = Literal[
    "completed",
    "max-turns",
    "max-tokens",
    "budget",
    "deadline",
    "api-error",
    "api-key",
    "invalid-input",
    "refusal",
    "no-result",
]


class AgentResult(Model):
    """What the runner writes: exactly one of plan, verdict, implementation on success."""

    role: Role
    """Role that ran."""
    status: Literal["completed", "stopped", "failed"]
    """completed: a valid answer; stopped: a bound was reached; failed: an error."""
    stopped_by: StopReason
    """What ended the run."""
    message: str = ""
    """Details, for people."""
    plan: PlanOutput | None = None
    """The planner's answer."""
    verdict: VerdictOutput | None = None
    """A reviewer's answer."""
    implementation: ImplementationOutput | None = None
    """The implementer's answer."""
    diff: str | None = None
    """The implementer's patch: the workspace's git diff against the base commit."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and cost of the attempt."""
    turns: int = 0
    """Model calls made."""
    model: str = ""
    """Model used."""
    replay: bool = False
    """True when the answers came from a recorded replay, not a live model."""
    context: list[str] = Field(default_factory=list)
    """Files shown to the agent up front, each with why it was chosen."""


# -- the result channel: how an attempt hands its result back, whatever runs it ----------

#: The file beside the result whose text becomes a pod's termination message.
SUMMARY_NAME = "summary.json"
#: The prefix of the one log line that carries the whole result.
RESULT_MARKER = "AGENTFACTORY-RESULT "
#: How much of a command's output a result keeps (its tail).
OUTPUT_CAP = 16_000


def summary_of(result_json: str, limit: int = 4096) -> str:
    """The termination-message summary of a result: what fits in 4 KiB, diff left out."""
    data = json.loads(result_json)
    data.pop("diff", None)
    text = json.dumps(data, separators=(",", ":"))
    if len(text.encode()) <= limit:
        return text
    keep = {k: data.get(k) for k in ("role", "status", "stoppedBy", "usage", "turns", "replay")}
    keep["truncated"] = True
    return json.dumps(keep, separators=(",", ":"))[:limit]
