"""GitHub, as far as the core needs to know it: where a repository's API is, and what each
role's token may do. Pure; the PyGithub adapter is `agentfactory.forge.github`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from agentfactory.core.observations import CIFinished
from agentfactory.core.task import FailedCheck

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus, Finding

#: Per-role permissions of minted installation tokens. Agents never write to the forge (the
#: operator pushes the patch an implementer returns), so every agent role reads; `metadata`
#: is the read GitHub grants every token anyway, spelled out so the minted token says so.
ROLE_PERMISSIONS: Final[dict[str, dict[str, str]]] = {
    "planner": {"contents": "read", "metadata": "read"},
    "plan-reviewer": {"contents": "read", "metadata": "read"},
    "implementer": {"contents": "read", "metadata": "read"},
    "code-reviewer": {"contents": "read", "metadata": "read", "pull_requests": "read"},
    "ci": {"contents": "read", "metadata": "read"},
}
#: The operator's own token: it pushes branches, opens, comments on and merges PRs, and reads
#: check runs and commit statuses.
OPERATOR_PERMISSIONS: Final[dict[str, str]] = {
    "contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write",
    "checks": "read", "statuses": "read",
}  # fmt: skip

_URL = re.compile(
    r"^(?P<scheme>https?)://(?P<host>[^/@\s]+)/(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)"
    r"(?:\.git)?/?$"
)


@dataclass(frozen=True)
class GitHubRepository:
    """A repository on github.com or a GitHub Enterprise Server."""

    api_url: str
    """REST API base: `https://api.github.com`, or `<host>/api/v3` for Enterprise."""
    owner: str
    name: str
    clone_url: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def github_repository(url: str) -> GitHubRepository:
    """The repository an HTTPS clone URL names. Raises ValueError with the fix."""
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(
            f"repository.url {url!r} is not a GitHub HTTPS clone URL; use"
            " https://github.com/OWNER/REPO.git (or your GitHub Enterprise host)"
        )
    scheme, host = match["scheme"], match["host"]
    api = "https://api.github.com" if host == "github.com" else f"{scheme}://{host}/api/v3"
    clone = f"{scheme}://{host}/{match['owner']}/{match['name']}.git"
    return GitHubRepository(api, match["owner"], match["name"], clone)


def role_permissions(role: str | None) -> dict[str, str]:
    """What a pod of *role* may do (None: the sandbox CI pod). Unknown roles get nothing."""
    return dict(ROLE_PERMISSIONS.get(role or "ci", {}))


@dataclass(frozen=True)
class ForgeCheck:
    """One check on a commit as the forge reports it: a check run or a commit status."""

    name: str
    state: Literal["pending", "success", "failure"]
    summary: str = ""


#: Check-run conclusions that count as green (GitHub's branch protection agrees).
GREEN_CONCLUSIONS: Final = frozenset({"success", "neutral", "skipped"})


def check_run_state(
    status: str, conclusion: str | None
) -> Literal["pending", "success", "failure"]:
    """A check run's state: pending until completed, then green or not by its conclusion."""
    if status != "completed":
        return "pending"
    return "success" if conclusion in GREEN_CONCLUSIONS else "failure"


def status_state(state: str) -> Literal["pending", "success", "failure"]:
    """A commit status's state (`error` is a failure, as branch protection treats it)."""
    return "success" if state == "success" else "pending" if state == "pending" else "failure"


def ci_verdict(
    head_sha: str, required: list[str], checks: list[ForgeCheck], *, waited: timedelta,
    timeout: timedelta,
) -> CIFinished | None:  # fmt: skip
    """The gate on the exact head: red as soon as a required check fails, green when every
    required check succeeded, a timeout (naming what never reported) once *timeout* has
    passed, else None (still waiting). GitHub already lists only the latest check run per name
    and the latest status per context; a name that is both a check run and a status counts
    as its worse report, since branch protection would require both."""
    states: dict[str, ForgeCheck] = {}
    for check in checks:
        known = states.get(check.name)
        if known is None or _rank(check) > _rank(known):
            states[check.name] = check
    failed = [FailedCheck(name=n, summary=states[n].summary[-2000:]) for n in required
              if n in states and states[n].state == "failure"]  # fmt: skip
    if failed:
        return CIFinished(head_sha=head_sha, state="failure", failed_checks=failed)
    waiting = [n for n in required if n not in states or states[n].state != "success"]
    if not waiting:
        return CIFinished(head_sha=head_sha, state="success")
    if waited >= timeout:
        missing = [FailedCheck(name=n, summary="not reported on this head within"
                               f" ci.timeoutSeconds ({int(timeout.total_seconds())} s)")
                   for n in waiting]  # fmt: skip
        return CIFinished(head_sha=head_sha, state="timeout", failed_checks=missing)
    return None


def _rank(check: ForgeCheck) -> int:
    return {"failure": 2, "success": 1, "pending": 0}[check.state]


def pull_request_body(task: str, spec: AgentTaskSpec) -> str:
    """A task's PR description: its handoff contract, for the reviewers who read PRs."""
    lines = [f"**AgentTask `{task}`**", "", spec.goal, "", "**Acceptance criteria**"]
    lines += [f"- {c}" for c in spec.acceptance_criteria]
    if spec.non_goals:
        lines += ["", "**Non-goals**", *(f"- {n}" for n in spec.non_goals)]
    lines += ["", "**Scope**", *(f"- `{p}`" for p in spec.scope.paths)]
    lines += ["", "_Opened by agentfactory; the task's phase is this PR's `agentfactory:` label._"]
    issue = spec.source.github_issue if spec.source else None
    if issue is not None:  # GitHub closes the issue when this PR merges
        lines += ["", f"Closes #{issue.number}"]
    return "\n".join(lines)


def pr_comments(
    status: AgentTaskStatus, mentions: Sequence[str] = (), approvers: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """The (key, text) comments a task's PR carries for its status: the accepted plan, the
    last review, a red or timed-out CI run, and an escalation waiting for a person (which
    mentions *mentions*), each under a key of its own so posting again edits, not repeats."""
    out: list[tuple[str, str]] = []
    record = status.escalation
    if record is not None and status.awaits_approval:
        who = " ".join(f"@{m.lstrip('@')}" for m in mentions)
        lines = "".join(f"\n- `{m.file}`" + (f":{m.line} `{m.text}`" if m.line else "")
                        + f" ({m.rule})" for m in record.matches[:20])  # fmt: skip
        why = (
            f"escalation rules {', '.join(record.rules)} need a person: {record.reason}"
            if record.matches
            else "merge.auto is false: every change waits for a person"
        )
        by = f" by one of {', '.join(approvers)}" if approvers else ""
        out.append((f"escalation-{record.revision}",
                    f"{who} {why}{lines}\n\nApprove with an approving review of this"
                    f" head{by}.".strip()))  # fmt: skip
    if status.plan is not None:
        plan = status.plan
        steps = "".join(f"\n{i}. {step}" for i, step in enumerate(plan.steps, 1))
        parts = (("Risky interfaces", plan.risky_interfaces),
                 ("Tests to add first", plan.tests_to_add_first),
                 ("Open questions", plan.open_questions))  # fmt: skip
        more = "".join(f"\n\n**{title}**" + "".join(f"\n- {item}" for item in items)
                       for title, items in parts if items)  # fmt: skip
        out.append(("plan", f"**Plan**\n\n{plan.summary}{steps}{more}"))
    note = status.implementation
    if note is not None:
        said = [f"**Implementer's note (revision {status.patch_revision})**", "", note.summary]
        for title, items in (("Looked for, not found", note.not_found),
                             ("Deliberately not done", note.skipped),
                             ("Checks it ran", note.checks)):  # fmt: skip
            said += [f"\n**{title}**", *(f"- {item}" for item in items)] if items else []
        said += [f"\n**Rollback**: {note.rollback}"] if note.rollback else []
        out.append((f"note-{status.patch_revision}", "\n".join(said)))
    review = status.last_review
    if review is not None:
        findings = "".join(f"\n- {_finding(f)}" for f in review.findings)
        stage = review.stage.slug.replace("-", " ")
        title = f"**{stage} #{review.attempt}: {review.verdict}**"
        out.append((f"review-{review.stage.slug}-{review.attempt}", title + findings))
    ci = status.ci
    if ci is not None and ci.state in ("failure", "timeout"):
        failed = "".join(f"\n- `{c.name}`: {c.summary[-500:]}" for c in ci.failed_checks)
        out.append((f"ci-{ci.head_sha[:12]}", f"**CI {ci.state} on {ci.head_sha[:12]}**{failed}"))
    if ci is not None and ci.proof is not None:
        lines = "".join(f"\n- {line}" for line in ci.proof.lines()[1:40])
        out.append((f"proof-{ci.head_sha[:12]}",
                    f"**Tests that prove the fix on {ci.head_sha[:12]}: {ci.proof.lines()[0]}**"
                    f"{lines}"))  # fmt: skip
    if status.patches:
        where = status.patches[0].ref.rsplit("/", 1)[0]
        lines = "".join(f"\n- implement #{k.attempt}: `{k.sha[:12]}`"
                        f" {'accepted' if k.accepted else 'rejected'} (`{k.ref}`)"
                        for k in status.patches)  # fmt: skip
        fetch = f"`git fetch origin '{where}/*:refs/remotes/attempts/*'`"
        out.append(("patches", f"**Every implementer patch**{lines}\n\nFetch them: {fetch}."))
    return out


def _finding(finding: Finding) -> str:
    where = (
        f"`{finding.file}`" + (f":{finding.line}" if finding.line else "") if finding.file else ""
    )
    return " ".join(part for part in (f"**{finding.severity}**", where, finding.message) if part)
