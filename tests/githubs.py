"""What the GitHub tests share: the repository and App installation they use on the fake,
and a pacing that does not make a test wait GitHub's full minute."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfactory.core.github import github_repository
from agentfactory.forge.github import GitHubApp, Pacing

if TYPE_CHECKING:
    from testbed.fakes.github_api import FakeGitHub

REPO = "acme/shop"
#: Everything the operator's own token asks for.
ALL = {"contents": "write", "metadata": "read", "pull_requests": "write", "issues": "write",
       "checks": "read", "statuses": "read"}  # fmt: skip
#: No pacing between calls; a secondary limit without Retry-After waits 1 s, not 60; a limit
#: that resets later than 3 s fails the call.
PACING = Pacing(seconds_between_requests=0, secondary_rate_wait=1, max_rate_limit_wait=3)


def app(fake: FakeGitHub, installation: int = 7, key: str | None = None) -> GitHubApp:
    """The fake's App, installed as *installation*, for REPO."""
    return GitHubApp(github_repository(fake.clone_url(REPO)), fake.app_id, installation,
                     key or fake.key, pacing=PACING)  # fmt: skip
