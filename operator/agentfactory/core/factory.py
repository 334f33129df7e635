"""The FactorySpec resource: one repository's assembly line.

Everything a factory decides (agents, checks, retries, concurrency, merge policy,
guardrails, escalation, budget) is a field here, documented by its docstring; the CRD and
`docs/reference.md` are generated from these models.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import ConfigDict, Field, JsonValue, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agentfactory.core.base import Model, StatusModel
from agentfactory.core.common import (
    KEY_PATTERN,
    LOGIN_PATTERN,
    QUANTITY_PATTERN,
    Check,
    ConfigMapKeyRef,
    ObjectMeta,
    SecretKeyRef,
    check_regex,
    list_map,
    unique_by,
)
from agentfactory.core.conditions import Condition
from agentfactory.core.globs import Glob
from agentfactory.core.names import K8sName

DEFAULT_IMAGE = "ghcr.io/agentfactory/agent-runner:0.1.0"
DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_TEST_PATHS = [
    "tests/**",
    "test/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/*_test.go",
    "**/*.test.[jt]s",
    "**/*.test.[jt]sx",
    "**/*.spec.[jt]s",
    "**/__tests__/**",
]


class GitHubAppCredentials(Model):
    """A GitHub App installation: tokens are minted per pod, for one repository."""

    secret_name: K8sName
    """Secret holding the App's id, installation id and private key."""
    app_id_key: str = "app-id"
    """Key of the App id in the Secret."""
    installation_id_key: str = "installation-id"
    """Key of the installation id in the Secret."""
    private_key_key: str = "private-key"
    """Key of the PEM private key in the Secret."""


class TokenCredentials(Model):
    """A plain token (or deploy key): usable, but it cannot be scoped per pod."""

    secret_name: K8sName
    """Secret holding the token."""
    key: str = "token"
    """Key of the token in the Secret."""


class RepositoryCredentials(Model):
    """How the operator authenticates to the forge: exactly one of githubApp or token."""

    github_app: GitHubAppCredentials | None = None
    """GitHub App credentials (preferred: per-pod, per-role, expiring tokens)."""
    token: TokenCredentials | None = None
    """A token Secret; the CredentialsValid condition warns that it cannot be scoped."""

    @model_validator(mode="after")
    def _exactly_one(self) -> RepositoryCredentials:
        if (self.github_app is None) == (self.token is None):
            raise PydanticCustomError(
                "credentials",
                "set exactly one of githubApp or token; remove the other",
                {"field": "githubApp"},
            )
        return self


#: An HTTP(S) URL with a user (and perhaps a password or token) before its host. (An ssh://
#: URL's user, `git@`, is no secret.)
USERINFO_RE = r"^https?://[^/@]*@"
URL_CREDENTIALS = (
    "the URL carries credentials (user:token@); they would show in the status, Events and"
    " pod arguments: remove them and put the token in a Secret named by {secret}"
)
CLEAR_TEXT = (
    "{field} is http://, so credentials would travel in clear text; use https:// (or set"
    " {flag}: true for a server on a network you trust)"
)


def url_rules(field: str, flag: str, secret: str, sends: str | None = None) -> list[JsonValue]:
    """The API server's rules (CEL) for a URL field that credentials travel to: none in it,
    and none over plain http (when *sends*, a CEL condition, holds, if given) unless
    `allowHTTP`."""
    absent = f"!has(self.{field})"
    return [{
        "rule": f"{absent} || !self.{field}.matches('{USERINFO_RE}')",
        "fieldPath": f".{field}", "message": URL_CREDENTIALS.format(secret=secret),
    }, {
        "rule": f"{absent} || !self.{field}.startsWith('http://')"
                + (f" || !{sends}" if sends else "")
                + " || (has(self.allowHTTP) && self.allowHTTP)",
        "fieldPath": f".{field}", "message": CLEAR_TEXT.format(field=field, flag=flag),
    }]  # fmt: skip


def check_url(url: str, field: str, flag: str, secret: str, *, sends: bool, allowed: bool) -> None:
    """The same rules for `validate` and the operator: PydanticCustomError naming the fix."""
    if re.match(USERINFO_RE, url):
        raise PydanticCustomError("url_credentials", URL_CREDENTIALS.format(secret=secret),
                                  {"field": field})  # fmt: skip
    if url.startswith("http://") and sends and not allowed:
        raise PydanticCustomError("clear_text", CLEAR_TEXT.format(field=field, flag=flag),
                                  {"field": field})  # fmt: skip


class Repository(Model):
    """The target repository."""

    url: str = Field(min_length=1, max_length=2048)
    """Clone URL (`https://github.com/org/repo.git`, `git@host:org/repo.git`, a path)."""
    base_branch: str = Field(default="main", min_length=1, max_length=255)
    """Branch that tasks start from and merge into."""
    branch_prefix: str = Field(default="factory/", max_length=100, pattern=r"^[A-Za-z0-9._/-]*$")
    """Prefix of task branches; the task name follows (`factory/add-webhook`). The base
    branch may not start with it (an empty prefix would let a task named `main` push to
    `main`)."""
    forge: Literal["github", "git"] = "git"
    """`github` (PRs, checks, reviews through the GitHub API) or `git` (any remote;
    CI runs in a sandbox and the operator merges with git)."""
    credentials: RepositoryCredentials | None = None
    """Forge credentials; required for `github`, optional for a public or local git remote."""
    allow_http: bool = False
    """Allow an `http://` URL with credentials, which then travel in clear text: for a remote
    on a network you trust. Without it, credentials go over `https://` or `ssh://` only."""

    # The same rules for the API server (CEL), so that kubectl apply is refused too: a token
    # in the URL never reaches etcd, conditions or Events.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!self.baseBranch.startsWith(self.branchPrefix)",
        "fieldPath": ".branchPrefix",
        "messageExpression": (
            "'branchPrefix \"' + self.branchPrefix + '\" would let a task push to the base"
            " branch ' + self.baseBranch + '; use a prefix the base branch does not start"
            " with, such as factory/'"
        ),
    }, *url_rules("url", "repository.allowHTTP", "repository.credentials",
                  sends="has(self.credentials)")]})  # fmt: skip

    @model_validator(mode="after")
    def _prefix_is_not_the_base(self) -> Repository:
        # A task's branch is the prefix and its name: with a prefix the base branch starts with,
        # a task with the right name would push its unreviewed patch onto the base.
        if self.base_branch.startswith(self.branch_prefix):
            raise PydanticCustomError(
                "prefix_names_base",
                "branchPrefix '{prefix}' would let a task push to the base branch {base}; use a"
                " prefix the base branch does not start with, such as factory/",
                {"prefix": self.branch_prefix, "base": self.base_branch,
                 "field": "branchPrefix"},
            )  # fmt: skip
        return self

    @model_validator(mode="after")
    def _no_credentials_in_the_clear(self) -> Repository:
        check_url(self.url, "url", "repository.allowHTTP", "repository.credentials",
                  sends=self.credentials is not None, allowed=self.allow_http)  # fmt: skip
        return self

    @property
    def credentials_secret(self) -> str | None:
        """The Secret the credentials are in (an App's or a token's), if any."""
        creds = self.credentials
        ref = (creds.github_app or creds.token) if creds is not None else None
        return ref.secret_name if ref is not None else None


#: What runs a role's session: our runner, Claude Code, or any image honouring the pod contract.
Engine = Literal["builtin", "claude-code", "image"]


class RoleOverride(Model):
    """Per-role settings that replace the factory-wide agent defaults."""

    # The API server refuses it too: an `image` engine names the image it runs.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "!has(self.engine) || self.engine != 'image' || has(self.image)",
        "fieldPath": ".image",
        "message": "engine is image but no image is named; set image to the agent image that"
                   " honours the pod contract (and command, unless its entrypoint does)",
    }, {
        "rule": "!has(self.command) || (has(self.engine) && self.engine == 'image')",
        "fieldPath": ".command",
        "message": "command is only for engine: image (the builtin and claude-code engines run"
                   " agentfactory agent); remove it or set engine: image",
    }]})  # fmt: skip

    engine: Engine = "builtin"
    """What runs this role's sessions: `builtin` (the factory's own runner), `claude-code`
    (Claude Code through the Claude Agent SDK, in an image that has it, such as the default
    one), or `image` (any image whose command honours the agent pod contract: it reads
    `/factory/input`, works in `/workspace` and writes `/factory/output/result.json`). Whatever
    the engine, the factory computes the diff, runs the checks and judges the diff itself."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """The image of this role's agent container (default: `agents.image`). The checkout
    before it and, for `engine: image`, the step after it that reads the result stay the
    factory's own image."""
    command: list[str] | None = Field(default=None, min_length=1, max_length=20)
    """For `engine: image`: the command to run (default: the image's entrypoint)."""
    model: str | None = Field(default=None, min_length=1, max_length=200)
    """Model for this role (for example a cheaper one for reviewers)."""
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    """Tool-loop turns this role may take per stage attempt."""
    instructions: str | None = Field(default=None, max_length=20000)
    """Extra instructions appended to the role's system prompt."""

    @model_validator(mode="after")
    def _engine_has_what_it_runs(self) -> RoleOverride:
        if self.engine == "image" and self.image is None:
            raise PydanticCustomError(
                "engine_without_image",
                "engine is image but no image is named; set image to the agent image that"
                " honours the pod contract (and command, unless its entrypoint does)",
                {"field": "image"},
            )
        if self.command is not None and self.engine != "image":
            raise PydanticCustomError(
                "command_without_image_engine",
                "command is only for engine: image (the builtin and claude-code engines run"
                " agentfactory agent); remove it or set engine: image",
                {"field": "command"},
            )
        return self


class Roles(Model):
    """Overrides for each agent role."""

    planner: RoleOverride = Field(default_factory=RoleOverride)
    """The planner: writes the plan."""
    plan_reviewer: RoleOverride = Field(default_factory=RoleOverride)
    """The plan reviewer: approves the plan or sends it back."""
    implementer: RoleOverride = Field(default_factory=RoleOverride)
    """The implementer: changes the code and runs the checks."""
    code_reviewer: RoleOverride = Field(default_factory=RoleOverride)
    """The code reviewer: a fresh session that approves the patch or sends it back."""

    def of(self, role: str) -> RoleOverride:
        """The settings of *role* (`planner`, `plan-reviewer`, `implementer`,
        `code-reviewer`)."""
        roles = {"planner": self.planner, "plan-reviewer": self.plan_reviewer,
                 "implementer": self.implementer, "code-reviewer": self.code_reviewer}  # fmt: skip
        return roles[role]


class GatewayLimits(Model):
    """What the model gateway lets this factory's agents do at once, so one runaway task
    cannot starve the others."""

    requests_per_minute: int = Field(default=240, ge=1, le=100_000)
    """Model requests per minute, across all the factory's attempts; past it a request waits
    (429 with `retry-after`)."""
    concurrent_streams: int = Field(default=16, ge=1, le=10_000)
    """Model requests in flight at once, across all the factory's attempts."""
    max_tokens_per_attempt: int | None = Field(default=None, ge=1)
    """Tokens one stage attempt may use (unset: what is left of the task's budget); past it
    no request of the attempt starts."""


class Agents(Model):
    """How agents run: image, model, credentials and shared context."""

    def image_of(self, role: str) -> str:
        """The image that runs *role*'s agent container."""
        return self.roles.of(role).image or self.image

    image: str = Field(default=DEFAULT_IMAGE, min_length=1, max_length=512)
    """Container image honouring the agent pod contract (inputs under `/factory/input`,
    workspace at `/workspace`, JSON result)."""
    model: str = Field(default=DEFAULT_MODEL, min_length=1, max_length=200)
    """Default model for every role."""
    max_turns: int = Field(default=40, ge=1, le=1000)
    """Default tool-loop turns per stage attempt."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the Anthropic API key (required on a cluster)."""
    base_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")
    """Any Anthropic-compatible endpoint; unset means Anthropic's API. `https://` unless
    `allowHTTP` is set."""
    allow_http: bool = False
    """Allow an `http://` `baseURL`, to which the API key then travels in clear text: for a
    gateway on a network you trust."""
    constitution: ConfigMapKeyRef | None = None
    """ConfigMap with the project's principles (AGENTS.md) that every agent reads first."""
    roles: Roles = Field(default_factory=Roles)
    """Per-role overrides."""
    gateway: GatewayLimits = Field(default_factory=GatewayLimits)
    """Limits the model gateway (which holds the key and meters every token) applies to this
    factory's agents."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": url_rules(
        "baseURL", "agents.allowHTTP", "agents.apiKeySecretRef")})  # fmt: skip

    @model_validator(mode="after")
    def _no_key_in_the_clear(self) -> Agents:
        check_url(self.base_url or "", "baseURL", "agents.allowHTTP", "agents.apiKeySecretRef",
                  sends=True, allowed=self.allow_http)  # fmt: skip
        return self


class ResourceList(Model):
    """Compute resources, as Kubernetes quantities."""

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """CPU (`500m`, `2`)."""
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """Memory (`2Gi`)."""
    ephemeral_storage: str | None = Field(
        default=None, alias="ephemeral-storage", pattern=QUANTITY_PATTERN
    )
    """Scratch disk for the workspace (`10Gi`)."""


class Resources(Model):
    """Requests and limits for every agent pod."""

    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="500m", memory="1Gi", ephemeral_storage="2Gi")
    )
    """What the scheduler reserves."""
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="2", memory="4Gi", ephemeral_storage="10Gi")
    )
    """The most a pod may use."""


#: Addresses that are not the internet: RFC 1918, shared (CGNAT), loopback, link-local (where
#: clouds serve instance metadata and credentials), and their IPv6 counterparts.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                    "127.0.0.0/8", "169.254.0.0/16", "fc00::/7", "fe80::/10")  # fmt: skip


class Egress(Model):
    """What agent pods may reach (the factory's NetworkPolicy)."""

    cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"], max_length=100)
    """Destination networks agents may reach (the model API, package registries)."""
    except_cidrs: list[str] = Field(default_factory=lambda: list(PRIVATE_NETWORKS), max_length=100)
    """Networks inside `cidrs` agents may not reach: by default the private, shared, loopback
    and link-local ranges (the API server, in-cluster services, the cloud's metadata endpoint).
    Add your cluster's service and pod ranges if they are public addresses; set `[]` to lift."""
    ports: list[int] = Field(default_factory=lambda: [443], max_length=20)
    """Destination TCP ports agents may reach."""
    allow_dns: bool = True
    """Allow DNS (UDP and TCP 53) to the cluster resolver."""

    @field_validator("cidrs", "except_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                raise PydanticCustomError(
                    "cidr",
                    "'{value}' is not a network: {error}; write it as '10.0.0.0/8'",
                    {"value": value, "error": str(exc)},
                ) from None
        return values

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[int]) -> list[int]:
        for value in values:
            if not 1 <= value <= 65535:
                raise PydanticCustomError(
                    "port", "port {value} is out of range; use 1 to 65535", {"value": value}
                )
        return values


class Sandbox(Model):
    """The pod every stage runs in."""

    runtime_class_name: str | None = Field(default=None, max_length=253)
    """RuntimeClass for stronger isolation (`gvisor`, `kata`)."""
    resources: Resources = Field(default_factory=Resources)
    """Requests and limits, including ephemeral storage."""
    timeout_seconds: int = Field(default=1800, ge=60, le=86400)
    """Deadline of one stage attempt (the pod's activeDeadlineSeconds)."""
    egress: Egress = Field(default_factory=Egress)
    """Network egress allowed to agent pods."""


class CI(Model):
    """The gate between implementation and code review."""

    source: Literal["github-checks", "sandbox"] = "sandbox"
    """`sandbox`: run the factory's checks on the exact head in a fresh pod;
    `github-checks`: wait for check runs and statuses on the head commit."""
    required_checks: list[str] = Field(default_factory=list, max_length=100)
    """Checks that must pass. Empty with `sandbox` means every factory check."""
    timeout_seconds: int = Field(default=3600, ge=60, le=86400)
    """The CI stage's deadline: how long `github-checks` are awaited, and the sandbox CI pod's
    `activeDeadlineSeconds`. Running out parks the task (`CITimedOut`) for a person."""


class Retries(Model):
    """How many times a stage may be tried again."""

    per_stage: int = Field(default=2, ge=0, le=20)
    """Retries of one stage after its first attempt (each back-edge spends one)."""
    max_total_attempts: int = Field(default=12, ge=1, le=200)
    """Attempts of all stages together before the task needs attention."""


class Concurrency(Model):
    """How many tasks run at once."""

    max_active_tasks: int = Field(default=2, ge=1, le=1000)
    """Tasks that may hold a slot (planning through merging) at once."""
    exclusive_paths: bool = True
    """Never run two tasks whose `scope.paths` can touch the same file."""


class Merge(Model):
    """How a finished task lands."""

    method: Literal["squash", "rebase", "merge"] = "squash"
    """Merge method."""
    auto: bool = True
    """Merge without a person when nothing escalated; `false` makes every task wait in
    AwaitingApproval."""
    delete_branch: bool = True
    """Delete the task branch after the merge."""
    speculation_depth: int = Field(default=4, ge=1, le=50)
    """How many tasks at the front of the merge queue are verified at once, each on top of
    all those ahead of it (their CI runs side by side), so that each merges as verified when
    those ahead have merged. A red one leaves the queue, and only those behind it restart.
    1 verifies one task at a time on the base. `method: rebase` always verifies one at a
    time (it replays the branch's commits, which would carry those ahead)."""
    batch_size: int = Field(default=1, ge=1, le=50)
    """How many queued tasks one CI run verifies: only the last of each batch runs CI, on
    top of all those ahead of it, and the others merge on its green run (their
    `status.ci.verifiedBy` names it). Each task still lands as its own commit, so the base
    between two tasks of a batch was not verified on its own. A red batch is bisected: it
    and the failed run's own change are cut into `speculationDepth` + 1 parts, the end of
    each part runs CI at once, and so on in the part that failed; the green tasks still
    merge. `speculationDepth` counts CI runs in flight, and the next batch is built while
    they go. 1 (the default) verifies every task with a run of its own; so do `method:
    rebase` and `ci.source: github-checks` (the repository's own CI runs on every task's
    head, and branch protection asks for it)."""

    @property
    def depth(self) -> int:
        """The speculation depth in effect for the merge method."""
        return 1 if self.method == "rebase" else self.speculation_depth


BUILTIN_PROTECTED_PATHS = (".github/workflows/**",)


class Guardrails(Model):
    """Limits every patch is checked against before it leaves the sandbox."""

    protected_paths: list[Glob] = Field(default_factory=list, max_length=200)
    """Paths no agent may change, besides the built-in `.github/workflows/**` (unless
    `replaceBuiltinProtectedPaths`); a patch touching one is sent back."""
    replace_builtin_protected_paths: bool = False
    """Protect only `protectedPaths`, without the built-in `.github/workflows/**` (the CI
    definitions: a patch that edits them could switch the checks off)."""
    max_changed_files: int = Field(default=50, ge=1, le=100000)
    """Most files one patch may change."""
    max_changed_lines: int = Field(default=1500, ge=1, le=10000000)
    """Most lines (added plus removed) one patch may change."""
    forbid_test_weakening: bool = True
    """Reject patches that delete test files or test functions, remove assertions or add
    skips in test files."""
    test_paths: list[Glob] = Field(default_factory=lambda: list(DEFAULT_TEST_PATHS), max_length=200)
    """Which files are tests, for `forbidTestWeakening`, `testWeakening` and `tests.proveFix`."""
    test_weakening: Literal["sendBack", "requireApproval", "warn"] = "sendBack"
    """What a test weakened by structure (found in CI by comparing each changed test on base
    and head: an assertion made constant or looser, an expected value bent to the changed
    code, an early return, a skip, a rename out of collection, a broadened exception) does.
    `sendBack` fails CI once and hands the findings to the implementer; a patch still flagged
    after that goes on to code review and then waits in AwaitingApproval for a person, who
    may accept it as intended. `requireApproval` waits for a person from the first flag.
    `warn` records the findings for the code reviewer and the pull request only."""

    @property
    def protected(self) -> list[str]:
        """Every protected glob: the built-in ones first, unless replaced."""
        builtin = [] if self.replace_builtin_protected_paths else list(BUILTIN_PROTECTED_PATHS)
        return builtin + [glob for glob in self.protected_paths if glob not in builtin]


class EscalationRule(Model):
    """A change that needs a person: matched on paths and/or added lines."""

    name: str = Field(pattern=KEY_PATTERN)
    """Unique rule name, shown in the task's status and events."""
    paths: list[Glob] = Field(default_factory=list, max_length=200)
    """Globs of changed files that trigger the rule (`migrations/**`)."""
    content_patterns: list[str] = Field(default_factory=list, max_length=200)
    """Regular expressions searched in added lines only (`(?i)drop\\s+table`)."""
    action: Literal["RequireApproval", "Park"] = "RequireApproval"
    """`RequireApproval`: finish review, then wait in AwaitingApproval before merging;
    `Park`: stop at once in NeedsAttention until a person approves."""

    @field_validator("content_patterns")
    @classmethod
    def _patterns_compile(cls, values: list[str], info: ValidationInfo) -> list[str]:
        rule = info.data.get("name", "?")
        for index, pattern in enumerate(values):
            try:
                check_regex(pattern)
            except PydanticCustomError as exc:
                raise PydanticCustomError(
                    "regex",
                    "rule '{rule}': contentPatterns[{index}] {message}",
                    {"rule": rule, "index": index, "message": exc.message()},
                ) from None
        return values

    @model_validator(mode="after")
    def _has_matcher(self) -> EscalationRule:
        if not self.paths and not self.content_patterns:
            raise PydanticCustomError(
                "escalation_rule",
                "rule '{rule}' matches nothing; give it paths, contentPatterns, or both",
                {"rule": self.name, "field": "paths"},
            )
        return self


class Notify(Model):
    """Who hears about escalations."""

    webhook_secret_ref: SecretKeyRef | None = None
    """Secret key holding a URL that gets a JSON POST whenever a task enters AwaitingApproval
    or NeedsAttention: the task, why, and the commands that answer it. With an `hmac-key` in
    the same Secret the body is signed (`X-Agentfactory-Signature-256: sha256=<hex>`). Tried
    three times; a `NotifyFailed` Warning Event says when it could not be delivered."""
    mention_on_pr: list[str] = Field(default_factory=list, max_length=50)
    """Logins or teams mentioned in the PR comment an escalation posts."""

    @field_validator("mention_on_pr")
    @classmethod
    def _logins(cls, values: list[str]) -> list[str]:
        return _check_logins(values)


def _check_logins(values: list[str]) -> list[str]:
    for value in values:
        if not re.match(LOGIN_PATTERN, value):
            raise PydanticCustomError(
                "login",
                "'{value}' is not a forge login, team or user name; write 'alice', '@org/team' or"
                " 'alice@example.com'",
                {"value": value},
            )
    return values


class Escalation(Model):
    """When a person must look before a change lands."""

    rules: list[EscalationRule] = Field(
        default_factory=list, max_length=100, json_schema_extra=list_map("name")
    )
    """Rules checked against every accepted patch."""
    approvers: list[str] = Field(default_factory=list, max_length=200)
    """Who may approve: forge logins (`alice`) and teams (`@org/team`) for reviews on the
    forge, Kubernetes user names (`alice@example.com`) for the `approved-by` annotation, which
    the chart's admission policy lets each person set only to their own name. Empty: anyone
    who may annotate the task, in their own name."""
    notify: Notify = Field(default_factory=Notify)
    """Notifications on escalation."""

    @field_validator("rules")
    @classmethod
    def _unique(cls, values: list[EscalationRule]) -> list[EscalationRule]:
        unique_by(values, "name", "escalation rule")
        return values

    @field_validator("approvers")
    @classmethod
    def _logins(cls, values: list[str]) -> list[str]:
        return _check_logins(values)


class Budget(Model):
    """Spending limits per task."""

    max_tokens_per_task: int = Field(default=5_000_000, ge=1)
    """Tokens (input, output, cache writes and reads) all of a task's stages may use."""
    max_cost_usd_per_task: float = Field(default=25.0, gt=0)
    """Dollars all of a task's stages may spend."""


class GitHubIssuesIntake(Model):
    """Turn labelled GitHub issues into AgentTasks."""

    label: str = Field(min_length=1, max_length=50)
    """Open issues with this label become AgentTasks, once each, named
    `<factory>-issue-<number>`, from the issue's sections `### Goal`, `### Acceptance
    criteria`, `### Scope` (optional: `### Non-goals`, `### Context`, `### Depends on`). Only
    people with triage access can label issues, so the label is the trust gate."""


class Intake(Model):
    """Where tasks come from besides `kubectl apply`."""

    github_issues: GitHubIssuesIntake | None = None
    """GitHub issue intake (`github` forge only)."""


_EXTERNAL_CI = "(has(self.ci) && has(self.ci.source) && self.ci.source == 'github-checks')"


class TestProof(Model):
    """Tests that prove the fix: the tests a patch adds or changes must fail on the base (with
    only the patch's test changes) and pass on the head. Run in the CI sandbox after the
    checks pass."""

    prove_fix: Literal["byKind", "required", "advisory", "off"] = "byKind"
    """`required`: a patch without such tests fails CI and goes back to the implementer with
    the tests that proved nothing; `advisory`: the proof is recorded only; `off`: not run;
    `byKind`: required for a task of `kind` fix or feature, advisory for the others."""
    command: str | None = Field(default=None, min_length=1, max_length=2000)
    """For a runner other than pytest: the command that runs one test file, with `{tests}`
    where the file goes (for example `npx jest {tests}`); each changed test file is run on
    the base and on the head."""

    def mode(self, kind: str) -> Literal["required", "advisory", "off"]:
        """The proof a task of *kind* needs."""
        if self.prove_fix != "byKind":
            return self.prove_fix
        return "required" if kind in ("fix", "feature") else "advisory"


class FactorySpecSpec(Model):
    """One repository's assembly line."""

    # The API server refuses it too: a factory whose sandbox CI has no checks merges
    # anything, unless it says `checks: []` and a person approves each merge.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": f"{_EXTERNAL_CI} || has(self.checks)",
        "fieldPath": ".checks",
        "message": "checks is missing, so nothing would prove a change works before it merges;"
                   " list the commands that must pass (tests, lint), or write `checks: []` with"
                   " `merge.auto: false` to have a person look at every change",
    }, {
        "rule": f"{_EXTERNAL_CI} || !has(self.checks) || size(self.checks) > 0"
                " || (has(self.merge) && has(self.merge.auto) && !self.merge.auto)",
        "fieldPath": ".merge.auto",
        "message": "merge.auto is true while checks is empty, so every change would merge"
                   " unproven; set it to false to have a person approve each merge, or add checks",
    }]})  # fmt: skip

    repository: Repository
    """The target repository."""
    agents: Agents = Field(default_factory=Agents)
    """Agent image, model, API key and constitution."""
    sandbox: Sandbox = Field(default_factory=Sandbox)
    """The pod every stage runs in."""
    checks: list[Check] = Field(
        default_factory=list, max_length=50, json_schema_extra=list_map("name")
    )
    """Checks the implementer must pass; also the CI of a sandbox CI source."""
    ci: CI = Field(default_factory=CI)
    """The CI gate."""
    retries: Retries = Field(default_factory=Retries)
    """Retry caps."""
    concurrency: Concurrency = Field(default_factory=Concurrency)
    """Concurrency limits and path locks."""
    merge: Merge = Field(default_factory=Merge)
    """Merge policy."""
    guardrails: Guardrails = Field(default_factory=Guardrails)
    """Limits every patch must respect."""
    tests: TestProof = Field(default_factory=TestProof)
    """Tests that prove the fix (break/fix), checked in CI."""
    escalation: Escalation = Field(default_factory=Escalation)
    """Rules that make a person look."""
    budget: Budget = Field(default_factory=Budget)
    """Spending limits per task."""
    intake: Intake | None = None
    """Automatic task intake."""

    @field_validator("checks")
    @classmethod
    def _unique_checks(cls, values: list[Check]) -> list[Check]:
        unique_by(values, "name", "check")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> FactorySpecSpec:
        forge = self.repository.forge
        if forge == "git" and self.ci.source == "github-checks":
            raise PydanticCustomError(
                "ci_source",
                "ci.source 'github-checks' needs repository.forge 'github';"
                " use ci.source 'sandbox' for a plain git remote",
                {"field": "ci.source"},
            )
        if forge == "github" and self.repository.credentials is None:
            raise PydanticCustomError(
                "credentials",
                "repository.forge 'github' needs repository.credentials;"
                " add githubApp (preferred) or token",
                {"field": "repository.credentials"},
            )
        if self.ci.source == "github-checks" and not self.ci.required_checks:
            raise PydanticCustomError(
                "required_checks",
                "ci.requiredChecks is empty, so the github-checks gate would pass anything;"
                " list the check names that must be green",
                {"field": "ci.requiredChecks"},
            )
        if self.ci.source == "sandbox":
            names = {check.name for check in self.checks}
            unknown = [name for name in self.ci.required_checks if name not in names]
            if unknown:
                raise PydanticCustomError(
                    "required_checks",
                    "ci.requiredChecks names {unknown} but checks defines {known};"
                    " add the checks or fix the names",
                    {"unknown": unknown, "known": sorted(names), "field": "ci.requiredChecks"},
                )
        if self.ci.source == "sandbox" and not self.checks:
            if "checks" not in self.model_fields_set:
                raise PydanticCustomError(
                    "no_checks",
                    "is missing, so nothing would prove a change works before it merges; list"
                    " the commands that must pass (tests, lint), or write `checks: []` with"
                    " `merge.auto: false` to have a person look at every change",
                    {"field": "checks"},
                )
            if self.merge.auto:
                raise PydanticCustomError(
                    "no_checks",
                    "is true while checks is empty, so every change would merge unproven; set"
                    " it to false to have a person approve each merge, or add checks",
                    {"field": "merge.auto"},
                )
        if self.intake and self.intake.github_issues and forge != "github":
            raise PydanticCustomError(
                "intake",
                "intake.githubIssues needs repository.forge 'github'; remove it or change forge",
                {"field": "intake.githubIssues"},
            )
        return self

    @property
    def required_check_names(self) -> list[str]:
        """The checks CI must see green (all factory checks when none are listed)."""
        return self.ci.required_checks or [check.name for check in self.checks]

    @property
    def merge_batch(self) -> int:
        """The merge queue's batch size in effect (see `merge.batchSize`)."""
        if self.merge.method == "rebase" or self.ci.source == "github-checks":
            return 1
        return self.merge.batch_size


class TaskCounts(StatusModel):
    """How many of the factory's tasks are where."""

    total: int = 0
    """All tasks that reference this factory."""
    active: int = 0
    """Tasks holding a slot (Planning through Merging)."""
    merged: int = 0
    """Tasks in Merged."""
    needs_attention: int = 0
    """Tasks in NeedsAttention."""
    by_phase: dict[str, int] = Field(default_factory=dict)
    """Counts for every phase that has tasks."""


#: Whose merge queue merges a factory's tasks.
MergedBy = Literal["agentfactory", "github-merge-queue"]


class FactorySpecStatus(StatusModel):
    """What the operator observed about the factory."""

    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Ready, CredentialsValid."""
    observed_generation: int | None = None
    """The generation last reconciled."""
    tasks: TaskCounts = Field(default_factory=TaskCounts)
    """Task counts by phase."""
    merge_queue: list[str] = Field(default_factory=list)
    """The merge queue in merge order, without the task merging now: tasks waiting to merge,
    and those being verified on top of the ones ahead (in CI)."""
    merging: str | None = None
    """The task merging now (at most one)."""
    merged_by: MergedBy | None = None
    """Which queue merges the factory's tasks: `agentfactory`, the operator's own
    speculative merge queue; or `github-merge-queue`, where a ruleset on the base branch
    requires GitHub's merge queue, which then builds, checks and merges each verified pull
    request the operator puts in it (read when the factory is reconciled)."""


class FactorySpec(Model):
    """A FactorySpec object as stored in Kubernetes."""

    api_version: Literal["agentfactory.dev/v1alpha1"]
    """`agentfactory.dev/v1alpha1`."""
    kind: Literal["FactorySpec"]
    """`FactorySpec`."""
    metadata: ObjectMeta
    """Object metadata."""
    spec: FactorySpecSpec
    """The desired assembly line."""
    status: FactorySpecStatus | None = None
    """Written by the operator."""
