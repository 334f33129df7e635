"""The AgentTask resource: one spec'd change (the handoff contract) and its pipeline status."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agentfactory.core.base import Model, StatusModel
from agentfactory.core.common import SHA_PATTERN, Check, ObjectMeta, list_map, unique_by
from agentfactory.core.conditions import Condition
from agentfactory.core.globs import Glob
from agentfactory.core.names import K8sName
from agentfactory.core.phases import Phase, Stage, Verdict
from agentfactory.core.transitions import Trigger

MAX_HISTORY = 50
#: The largest task spec, as JSON: its contract goes to every stage pod in a ConfigMap (at
#: most 1 MiB with the factory's context and the feedback), and a spec this long is no
#: longer the precise spec of one change.
MAX_SPEC_BYTES = 64 * 1024

#: Characters no text of a spec may hold: C0 and C1 controls but tab and newline (terminal
#: escapes in `kubectl get`, NULs that git and HTTP refuse) and the bidirectional overrides
#: that make text read differently from what it says ("Trojan Source").
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(text: str) -> str:
    found = _HIDDEN.search(text)
    if found:
        raise PydanticCustomError(
            "control_character",
            "contains the invisible character U+{code} at position {at}; remove it (tab and"
            " newline are fine)",
            {"code": f"{ord(found.group()):04X}", "at": found.start()},
        )
    return text


Visible = AfterValidator(_visible)
"""For text people and agents read: any language, no control or direction-override
characters (after the length checks, so they keep their own messages)."""
Statement = Annotated[str, Field(max_length=2000), Visible]
"""One criterion, non-goal or decision: a sentence or a short paragraph."""


class TaskContext(Model):
    """What the agents should read first."""

    files: list[Glob] = Field(default_factory=list, max_length=200)
    """Repository files (or globs) that matter; context selection starts from them."""
    docs: list[Annotated[str, Field(max_length=2048)]] = Field(default_factory=list, max_length=50)
    """Documents to read: repository paths or URLs."""
    decisions: list[Statement] = Field(default_factory=list, max_length=50)
    """Prior decisions the change must respect, one per entry."""


class Scope(Model):
    """Which files the task may change; also its lock against overlapping tasks."""

    paths: list[Glob] = Field(min_length=1, max_length=200)
    """Globs of files the agents may change (`src/webhooks/**`, `tests/test_webhooks.py`)."""


class GitHubIssueSource(Model):
    """The GitHub issue a task was created from."""

    number: int = Field(ge=1)
    """Issue number."""
    url: str | None = Field(default=None, max_length=2048)
    """Issue URL."""


class TaskSource(Model):
    """Where the task came from."""

    github_issue: GitHubIssueSource | None = None
    """Set when the task was created by GitHub issue intake."""


#: The handoff contract: what agents work against and reviewers judge by. Frozen once the
#: task exists (a change would be judged against a spec its earlier stages never saw);
#: priority and dependsOn (scheduling) may change.
FROZEN = ("goal", "acceptanceCriteria", "nonGoals", "context", "scope", "checks", "stopWhen",
          "source")  # fmt: skip


class AgentTaskSpec(Model):
    """One change, spec'd precisely enough that done is checkable. Its contract (goal,
    acceptanceCriteria, nonGoals, context, scope, checks, stopWhen, source) cannot change once
    the task exists; priority and dependsOn can."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": " && ".join(f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f})"
                            f" || self.{f} == oldSelf.{f})" for f in FROZEN),
        "message": "the task's contract (" + ", ".join(FROZEN) + ") cannot change once the"
                   " task exists: its stages ran against it; create a new task (priority and"
                   " dependsOn may change)",
    }]})  # fmt: skip

    factory_ref: Annotated[K8sName, Field(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "self == oldSelf",
        "message": "factoryRef cannot change once the task exists; create a new task for the"
                   " other factory"}]})]  # fmt: skip
    """Name of the FactorySpec (same namespace) whose assembly line runs this task. It cannot
    change once the task exists (its branch, attempts and history belong to that factory)."""
    goal: Annotated[str, Field(min_length=1, max_length=10000), Visible]
    """One observable behaviour the change delivers."""
    acceptance_criteria: list[Statement] = Field(min_length=1, max_length=100)
    """Checkable statements that are true when the task is done. At least one: if nobody
    can say what done means, no agent should start."""
    non_goals: list[Statement] = Field(default_factory=list, max_length=100)
    """What the change must not do."""
    context: TaskContext = Field(default_factory=TaskContext)
    """Files, docs and decisions the agents read first."""
    scope: Scope
    """Files the agents may change."""
    checks: list[Check] = Field(
        default_factory=list, max_length=50, json_schema_extra=list_map("name")
    )
    """Checks for this task, run after the factory's."""
    depends_on: list[K8sName] = Field(default_factory=list, max_length=100)
    """Tasks (same namespace) that must be Merged before this one starts."""
    priority: int = Field(default=0, ge=-1000, le=1000)
    """Higher runs first; equal priorities run oldest first."""
    kind: Literal["fix", "feature", "refactor", "chore", "docs", "change"] = "change"
    """What kind of change: a `fix` or `feature` must come with tests that fail without it
    (the factory's `tests.proveFix: byKind`, the default); for the others that proof is
    advisory."""
    stop_when: Annotated[str, Field(max_length=4000), Visible] | None = None
    """When an agent should stop and hand back instead of pressing on."""
    source: TaskSource | None = None
    """Origin of the task, when created by intake."""

    @field_validator("acceptance_criteria", "non_goals")
    @classmethod
    def _no_blank(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if not value.strip():
                raise PydanticCustomError(
                    "blank",
                    "entry {index} is blank; write the criterion or remove it",
                    {"index": index},
                )
        return values

    @field_validator("depends_on")
    @classmethod
    def _unique_deps(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            raise PydanticCustomError(
                "duplicate",
                "dependsOn lists {names} more than once; list each task once",
                {"names": duplicates},
            )
        return values

    @field_validator("checks")
    @classmethod
    def _unique_checks(cls, values: list[Check]) -> list[Check]:
        unique_by(values, "name", "check")
        return values

    @model_validator(mode="after")
    def _fits(self) -> AgentTaskSpec:
        size = len(self.model_dump_json(by_alias=True, exclude_defaults=True).encode())
        if size > MAX_SPEC_BYTES:
            raise PydanticCustomError(
                "spec_too_large",
                "is {size} bytes as JSON, more than the {limit} a task may hold; move long"
                " context into repository files and name them in context.files, or split the"
                " task",
                {"size": size, "limit": MAX_SPEC_BYTES},
            )
        return self


class StageAttempts(StatusModel):
    """Attempts of each stage in the current round (a person's retry starts a new round)."""

    plan: int = 0
    """Planner sessions."""
    plan_review: int = 0
    """Plan-review sessions."""
    implement: int = 0
    """Implementer sessions."""
    ci: int = 0
    """CI runs."""
    code_review: int = 0
    """Code-review sessions."""
    merge: int = 0
    """Merge attempts."""

    def of(self, stage: Stage) -> int:
        """Attempts of *stage*."""
        return int(getattr(self, _attr(stage)))

    def bumped(self, stage: Stage) -> StageAttempts:
        """A copy with one more attempt of *stage*."""
        return self.model_copy(update={_attr(stage): self.of(stage) + 1})


def _attr(stage: Stage) -> str:
    return {"planReview": "plan_review", "codeReview": "code_review"}.get(stage.value, stage.value)


class QueuePlace(StatusModel):
    """A task's place in its factory's merge queue, from reaching Merging until it leaves
    (merged, sent back, parked)."""

    entered: datetime
    """When it joined the queue: its order (after priority), kept while it is verified again."""
    onto: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The head of the task ahead its head was built on (None: the base)."""
    ahead: list[str] = Field(default_factory=list, max_length=100)
    """The queued tasks whose changes its head carries, nearest the front first: it merges
    only after all of them."""
    conflict: str | None = Field(default=None, pattern=SHA_PATTERN)
    """The head ahead it could not be built on (a conflict): it waits for that one to merge."""
    built: bool = False
    """Its head was built in the queue (on the base as it was, or on the one ahead), so the
    queue builds the ones behind it on that head."""
    covered: bool = False
    """Its head is verified by the CI run of a task behind it in its batch
    (`merge.batchSize`), not by a run of its own."""
    on_forge: str | None = Field(default=None, max_length=1000)
    """What the forge's own merge queue (GitHub's, where the base branch requires one) says
    of it, once it is in there: that queue builds, checks and merges it."""


class KeptPatch(StatusModel):
    """An implementer attempt's patch, kept on the remote whether or not it was accepted."""

    attempt: int = Field(ge=1)
    """The implement attempt that produced it."""
    ref: str = Field(max_length=300)
    """Where it is: `refs/agentfactory/<task>/implement-<attempt>` on the remote."""
    sha: str = Field(pattern=SHA_PATTERN)
    """Its commit."""
    accepted: bool
    """Whether the checks on the patch (scope, guardrails, the agent's own checks) passed."""


class PullRequestRef(StatusModel):
    """The task's pull request."""

    number: int = Field(ge=1)
    """PR number."""
    url: str
    """PR URL."""


class PlanSummary(StatusModel):
    """The accepted plan, in brief."""

    summary: str
    """What the planner intends."""
    steps: list[str] = Field(default_factory=list)
    """Planned steps."""
    files: list[str] = Field(default_factory=list)
    """Files the plan expects to touch."""
    risky_interfaces: list[str] = Field(default_factory=list)
    """Public interfaces, schemas or behaviours the change could break."""
    tests_to_add_first: list[str] = Field(default_factory=list)
    """Tests that should fail before the change and pass after it."""
    open_questions: list[str] = Field(default_factory=list)
    """What the planner found the spec leaves unclear: the task waits for a person."""


class ImplementationNote(StatusModel):
    """What the implementer said of its accepted patch, for the code reviewer and the PR."""

    summary: str
    """What changed."""
    not_found: list[str] = Field(default_factory=list)
    """What it looked for and could not find."""
    skipped: list[str] = Field(default_factory=list)
    """What it deliberately did not do, and why."""
    rollback: str = ""
    """The smallest way to undo the change."""
    checks: list[str] = Field(default_factory=list)
    """The checks it ran on its final workspace, with their outcome (`test: passed`)."""


class Finding(StatusModel):
    """One reviewer finding."""

    file: str | None = None
    """File the finding is about."""
    line: int | None = None
    """Line the finding is about."""
    severity: Literal["info", "minor", "major", "critical"] = "major"
    """How much it matters."""
    message: str
    """What is wrong."""
    would_change_verdict: str | None = None
    """What would turn the verdict around."""


class ReviewRecord(StatusModel):
    """The last review verdict."""

    stage: Stage
    """planReview or codeReview."""
    attempt: int
    """The review session's attempt number."""
    verdict: Verdict
    """APPROVE or REQUEST_CHANGES."""
    findings: list[Finding] = Field(default_factory=list)
    """Findings, most important first."""
    revision: int = 0
    """The patch revision reviewed (0 for a plan review)."""


class FailedCheck(StatusModel):
    """A check that failed, with the tail of its output."""

    name: str
    """Check name."""
    summary: str = ""
    """Tail of its output."""


class ProvedTest(StatusModel):
    """One test the patch adds or changes, run on the base (with only the patch's test
    changes) and on the head."""

    test: str
    """Its id (`path::name`, or the file for a runner without ids)."""
    base: Literal["passed", "failed", "error", "skipped"]
    """On the base: it must fail (an error, such as a missing symbol, counts as failing)."""
    head: Literal["passed", "failed", "error", "skipped"]
    """On the head: it must pass."""


class WeakenedTest(StatusModel):
    """A test the patch weakened, found by comparing its structure on base and head."""

    file: str
    """The test file."""
    test: str
    """The test (`name`, or `Class.name`)."""
    kind: str
    """removed, renamed-out, constant, looser, expected-changed, early-return, skipped,
    broadened, swallowed, fewer-assertions."""
    message: str
    """What changed, for people and for the implementer."""
    line: int | None = None
    """Where, on the head."""


class Proof(StatusModel):
    """Whether the patch's tests prove its fix, and whether it weakened any."""

    verdict: Literal["proven", "unproven", "no-tests"]
    """proven: every added or changed test fails on the base and passes on the head."""
    required: bool = False
    """Whether the factory requires the proof for this task (else it is advisory)."""
    message: str = ""
    """The verdict in words, naming the tests that proved nothing."""
    tests: list[ProvedTest] = Field(default_factory=list)
    """Each test the patch adds or changes, on the base and on the head."""
    weakenings: list[WeakenedTest] = Field(default_factory=list)
    """The tests the patch weakened."""
    base_seconds: float = 0.0
    """How long the tests ran on the base."""
    head_seconds: float = 0.0
    """How long they ran on the head."""

    def lines(self) -> list[str]:
        """The record for people and for the code reviewer: the verdict, each test on the
        base and the head, how long each side ran, and each weakened test."""
        said = f": {self.message}" if self.message else ""
        out = [f"{self.verdict} ({'required' if self.required else 'advisory'}){said}"]
        out += [f"`{t.test}`: {t.base} on the base, {t.head} on the head" for t in self.tests]
        if self.tests:
            out.append(f"ran {self.base_seconds:.1f} s on the base and {self.head_seconds:.1f} s"
                       " on the head")  # fmt: skip
        out += [f"weakened `{w.file}` {w.test}" + (f" (line {w.line})" if w.line else "")
                + f": {w.message}" for w in self.weakenings]  # fmt: skip
        return out


class CIRecord(StatusModel):
    """The CI state of the current head."""

    state: Literal["pending", "success", "failure", "timeout"]
    """pending, success, failure or timeout."""
    head_sha: str = Field(pattern=SHA_PATTERN)
    """The commit the checks ran on."""
    failed_checks: list[FailedCheck] = Field(default_factory=list)
    """What failed."""
    proof: Proof | None = None
    """Whether the patch's tests prove the fix (break/fix) and whether it weakened any."""
    verified_by: str | None = Field(default=None, max_length=253)
    """The task whose CI run verified this head, when the merge queue verified it in a batch
    (`merge.batchSize`): that run's head carried this one's change."""


class EscalationMatch(StatusModel):
    """Where an escalation rule matched."""

    rule: str
    """Rule name."""
    action: Literal["RequireApproval", "Park"]
    """What the rule asks for."""
    file: str
    """Matched file."""
    line: int | None = None
    """Matched added line (content rules)."""
    text: str | None = None
    """The added line's text (content rules), cut to 200 characters."""


class EscalationRecord(StatusModel):
    """Escalation rules that matched the current patch, and who approved it."""

    revision: int
    """The patch revision the matches belong to."""
    matches: list[EscalationMatch] = Field(default_factory=list)
    """Every match (bounded)."""
    rules: list[str] = Field(default_factory=list)
    """Names of the rules that matched."""
    reason: str = ""
    """Human summary."""
    approved_by: str | None = None
    """Who approved this revision."""


class GuardrailViolation(StatusModel):
    """A guardrail the last rejected patch broke."""

    rule: Literal[
        "protected-path",
        "max-changed-files",
        "max-changed-lines",
        "test-weakening",
        "empty-patch",
        "out-of-scope",
        "checks-failed",
        "symlink-out",
    ]
    """Which guardrail."""
    file: str | None = None
    """The file, where one applies."""
    line: int | None = None
    """The line, where one applies."""
    message: str
    """What is wrong."""


class Usage(StatusModel):
    """Tokens and dollars spent so far."""

    input_tokens: int = Field(default=0, ge=0)
    """Uncached input tokens."""
    output_tokens: int = Field(default=0, ge=0)
    """Output tokens."""
    cache_creation_tokens: int = Field(default=0, ge=0)
    """Tokens written to the prompt cache."""
    cache_read_tokens: int = Field(default=0, ge=0)
    """Tokens read from the prompt cache."""
    cost_usd: float = Field(default=0.0, ge=0)
    """Dollars."""

    @property
    def total_tokens(self) -> int:
        """Every billed token, as `budget.maxTokensPerTask` counts them."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_tokens
            + self.cache_read_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_tokens=self.cache_creation_tokens + other.cache_creation_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )


class HistoryEntry(StatusModel):
    """One transition in the audit trail."""

    time: datetime
    """When it happened."""
    from_: Phase = Field(alias="from")
    """Phase before."""
    to: Phase
    """Phase after."""
    reason: str
    """CamelCase reason."""
    message: str = ""
    """Details for humans."""
    pod: str | None = None
    """The stage attempt's pod, when one was involved."""


class AgentTaskStatus(StatusModel):
    """Where the task is and everything that happened to it."""

    phase: Phase = Phase.PENDING
    """Pipeline phase."""
    stage: Stage | None = None
    """Stage of the current (or, when parked, the last) step."""
    attempt: int = Field(default=0, ge=0)
    """Attempt number of the current stage; 0 while waiting to start it."""
    attempts: StageAttempts = Field(default_factory=StageAttempts)
    """Attempts per stage in this round."""
    total_attempts: int = Field(default=0, ge=0)
    """Attempts of all stages in this round."""
    round: int = Field(default=1, ge=1)
    """1, plus one for every retry a person asked for."""
    round_baseline: StageAttempts = Field(default_factory=StageAttempts)
    """Attempts the retry caps do not count: `attempts` when this round began, plus the
    merge attempts that found the base moved and the CI runs that re-verified the rebased
    head (nobody's failure)."""
    round_baseline_total: int = Field(default=0, ge=0)
    """`totalAttempts` the retry caps do not count, likewise."""
    resume_from: Stage | None = None
    """The stage a person's retry resumes at, once the task is admitted again."""
    branch: str | None = None
    """Task branch."""
    pull_request: PullRequestRef | None = None
    """The task's pull request."""
    patch_revision: int = Field(default=0, ge=0)
    """Accepted implementer patches so far; reviews and approvals name the one they saw."""
    patches: list[KeptPatch] = Field(default_factory=list, max_length=100)
    """Every implementer patch, rejected ones included, each kept as a ref on the remote
    (`git fetch origin 'refs/agentfactory/<task>/*:refs/attempts/*'`) until the task is
    deleted."""
    head_sha: str | None = Field(default=None, pattern=SHA_PATTERN)
    """Head of the task branch."""
    merged_sha: str | None = Field(default=None, pattern=SHA_PATTERN)
    """Commit on the base branch that landed the task."""
    plan: PlanSummary | None = None
    """The accepted (or latest) plan."""
    implementation: ImplementationNote | None = None
    """The implementer's note on the latest accepted patch."""
    last_review: ReviewRecord | None = None
    """The latest review verdict."""
    ci: CIRecord | None = None
    """CI of the current head."""
    escalation: EscalationRecord | None = None
    """Escalation rules the current patch matched (and `test-weakening`, when CI found a
    weakened test that waits for a person)."""
    queue: QueuePlace | None = None
    """Its place in the factory's merge queue (Merging, or CI while verified there)."""
    weakening_sent_back: bool = False
    """CI already sent a patch back for weakened tests: under `guardrails.testWeakening:
    sendBack`, a later patch still flagged waits for a person instead of going back again."""
    guardrail_violations: list[GuardrailViolation] = Field(default_factory=list)
    """Why the last patch was sent back."""
    feedback: str | None = None
    """Objections handed to the current stage attempt (review findings, CI output)."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens and cost so far."""
    history: list[HistoryEntry] = Field(default_factory=list)
    """The latest transitions, oldest first (at most 50)."""
    history_dropped: int = Field(default=0, ge=0)
    """Older transitions dropped from `history`."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Progressing, AwaitingHuman, Succeeded."""
    reason: str | None = None
    """CamelCase reason of the last transition."""
    message: str | None = None
    """Why the task is where it is, with the fix when it is stuck."""
    last_transition_time: datetime | None = None
    """When the phase last changed."""
    observed_generation: int | None = None
    """The spec generation this status reflects."""

    @property
    def awaits_approval(self) -> bool:
        """A person's approval would move the task on: it passed review and waits in
        AwaitingApproval, or an escalation rule parked it in NeedsAttention."""
        return self.phase == Phase.AWAITING_APPROVAL or (
            self.phase == Phase.NEEDS_ATTENTION and self.reason == Trigger.ESCALATION_PARKED
        )

    @property
    def ci_passed(self) -> bool:
        """CI passed on its current head (a run of its own, or its batch's)."""
        return (
            self.ci is not None and self.ci.state == "success" and self.ci.head_sha == self.head_sha
        )

    @property
    def ci_held(self) -> bool:
        """Its CI failed in the merge queue on top of others, and it waits to learn whose
        failure that is (no attempt runs)."""
        return (self.phase == Phase.CI and self.attempt == 0
                and self.ci is not None and self.ci.state == "failure")  # fmt: skip


class AgentTask(Model):
    """An AgentTask object as stored in Kubernetes."""

    api_version: Literal["agentfactory.dev/v1alpha1"]
    """`agentfactory.dev/v1alpha1`."""
    kind: Literal["AgentTask"]
    """`AgentTask`."""
    metadata: ObjectMeta
    """Object metadata."""
    spec: AgentTaskSpec
    """The change to make: at most 64 KiB as JSON (long context belongs in repository files,
    named in `context.files`). Its texts may be in any language but hold no control
    characters other than tab and newline, and no direction overrides."""
    status: AgentTaskStatus | None = None
    """Written by the operator."""

    @model_validator(mode="after")
    def _no_self_dependency(self) -> AgentTask:
        if self.metadata.name in self.spec.depends_on:
            raise PydanticCustomError(
                "self_dependency",
                "task '{name}' depends on itself; remove '{name}' from spec.dependsOn",
                {"name": self.metadata.name, "field": "spec.dependsOn"},
            )
        return self
