"""What the GitHub tests share: the repository and App installation they use on the fake,
and a pacing that does not make a test wait GitHub's full minute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentfactory.core.github import github_repository
from agentfactory.forge.github import GitHubApp, GitHubForge, Pacing

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.fakes.github_api import FakeGitHub

    from agentfactory.core.forges import MergeOutcome

REPO = "acme/shop"
#: Everything the operator's own token asks for.
ALL = {"contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write",
       "checks": "read", "statuses": "read"}  # fmt: skip
#: No pacing between calls; a secondary limit without Retry-After waits 1 s, not 60; a limit
#: that resets later than 3 s fails the call.
PACING = Pacing(seconds_between_requests=0, secondary_rate_wait=1, max_rate_limit_wait=3)


def app(fake: FakeGitHub, installation: int = 7, key: str | None = None,
        pacing: Pacing = PACING) -> GitHubApp:  # fmt: skip
    """The fake's App, installed as *installation*, for REPO."""
    return GitHubApp(github_repository(fake.clone_url(REPO)), fake.app_id, installation,
                     key or fake.key, pacing=pacing)  # fmt: skip


def forge(fake: FakeGitHub, workdir: Path, pacing: Pacing = PACING) -> GitHubForge:
    """The operator's forge for REPO on the fake, with its clone in *workdir*."""
    return GitHubForge.at(app(fake, pacing=pacing), workdir)


def open_pr(github: FakeGitHub, f: GitHubForge, text: str = "notes\n") -> tuple[str, int]:
    """A task's branch `factory/notes` with NOTES.md set to *text* on the base, and its PR:
    (head, PR number)."""
    head = github.commit(REPO, github.head_of(REPO, "main") or "", "NOTES.md", text, "notes")
    github.push(REPO, "factory/notes", head)
    return head, f.ensure_pull_request("factory/notes", "notes", "contract").number


def move_base(github: FakeGitHub, path: str = "OTHER.md", text: str = "other\n") -> str:
    """Someone merges a change of *path* into main meanwhile: main's new head."""
    base = github.head_of(REPO, "main") or ""
    moved = github.commit(REPO, base, path, text, f"meanwhile: {path}")
    github.push(REPO, "main", moved)
    return moved


def merge(f: GitHubForge, head: str, **kwargs: Any) -> MergeOutcome:
    """Merge the `factory/notes` task at *head* (by squash unless *kwargs* say otherwise)."""
    args: dict[str, Any] = {"task": "notes", "branch": "factory/notes", "head_sha": head,
                            "method": "squash", "title": "notes", "body": "- it works",
                            "delete_branch": True, **kwargs}  # fmt: skip
    return f.merge(**args)
