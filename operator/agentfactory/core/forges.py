"""The forge seam: what the reconcile loop asks of the place the repository lives.

Every forge is a git remote the operator alone writes (:class:`Forge`); some have more, each
a capability of its own: pull requests (:class:`HasPullRequests`), checks on commits
(:class:`HasChecks`), people's reviews (:class:`HasApprovals`), issues to take tasks from
(:class:`HasIssues`) and credentials that can be tried (:class:`VerifiesCredentials`). The
loop asks the forge registry (`agentfactory.forge.registry`) for a capability and gets the
forge or None, so nothing outside the registry asks which kind of forge it holds, and a new
forge (GitLab, Gitea) is one module that implements what it has, plus one line there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from agentfactory.core.github import ForgeCheck
    from agentfactory.core.intake import Issue


class ForgeError(Exception):
    """A forge operation failed; the message says what the forge said."""


class ForgeBusyError(ForgeError):
    """The forge asked to be called again later (a rate limit, a 5xx): nothing is wrong."""


@dataclass(frozen=True)
class MergeOutcome:
    """What a merge request came to (mirrors the core's MergeFinished)."""

    outcome: Literal["merged", "queued", "conflict", "base-moved", "blocked", "error"]
    head_sha: str
    merged_sha: str | None = None
    new_head_sha: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Rebased:
    """A task's change replayed on another commit (the merge queue's speculation)."""

    head_sha: str | None
    """The new head; None when it conflicts."""
    message: str = ""
    """Which files conflict."""


@dataclass(frozen=True)
class Reviews:
    """What people said of one head on its pull request."""

    approved: list[str]
    """Listed approvers whose latest review approves it."""
    changes: tuple[str, str] | None = None
    """(login, what they asked) for a request for changes."""


@dataclass
class PullRequest:
    """A task's pull request."""

    number: int
    url: str
    head_sha: str


@runtime_checkable
class Forge(Protocol):
    """A git remote: the operator reads it, commits agents' diffs, pushes task branches and
    merges them. Every write is idempotent."""

    def base_sha(self) -> str: ...
    def merge_base(self, a: str, b: str) -> str: ...
    def diff(self, base: str, head: str) -> str: ...
    def checkout_into(self, dest: Path, ref: str) -> None: ...
    def credentials_for(self, role: str | None) -> dict[str, str]: ...
    def commit_patch(self, parent: str, diff: str, message: str) -> str: ...
    def push_branch(self, branch: str, sha: str) -> None: ...
    def keep(self, task: str, label: str, sha: str) -> str: ...
    def forget(self, task: str) -> list[str]: ...
    def close(self) -> None: ...

    def merge(
        self, *, task: str, branch: str, head_sha: str, method: str, title: str, body: str,
        delete_branch: bool,
    ) -> MergeOutcome: ...  # fmt: skip

    def rebase_onto(self, head_sha: str, *, upstream: str | None, onto: str | None) -> Rebased:
        """*head_sha*'s commits after *upstream* (None: after it left the base) replayed on
        *onto* (None: the base), not pushed."""
        ...


@runtime_checkable
class HasPullRequests(Protocol):
    """Pull requests: the task's change as people review it, labelled and commented on."""

    def ensure_pull_request(self, branch: str, title: str, body: str) -> PullRequest: ...
    def comment_all(self, number: int, comments: Sequence[tuple[str, str]]) -> None: ...
    def label_phase(self, number: int, phase: str) -> None: ...


@runtime_checkable
class HasChecks(Protocol):
    """Checks reported on commits (CI that runs on the forge)."""

    def checks(self, sha: str) -> list[ForgeCheck]: ...


@runtime_checkable
class HasApprovals(Protocol):
    """People's reviews of a pull request's head."""

    def reviews(self, number: int, head_sha: str, approvers: list[str]) -> Reviews: ...


@runtime_checkable
class HasIssues(Protocol):
    """Issues that become tasks."""

    def open_issues(self, label: str) -> list[tuple[Issue, set[str]]]: ...
    def comment(self, number: int, key: str, text: str) -> None: ...
    def take_issue(self, number: int, text: str) -> None: ...


@runtime_checkable
class HasSettings(Protocol):
    """A forge whose repository settings can refuse what a FactorySpec asks of it."""

    def refusals(self, merge_method: str) -> list[str]:
        """What the repository's settings refuse, each naming the spec field and the fix."""
        ...


@runtime_checkable
class HasMergeQueue(Protocol):
    """A forge whose own merge queue may be required for the base branch (GitHub's)."""

    def merge_queue(self) -> bool:
        """Whether the forge's own merge queue merges into the base branch."""
        ...


@runtime_checkable
class VerifiesCredentials(Protocol):
    """Credentials that can be tried against the forge."""

    def verify(self) -> None: ...
