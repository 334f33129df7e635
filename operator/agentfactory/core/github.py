"""GitHub, as far as the core needs to know it: where a repository's API is, and what each
role's token may do. Pure; the PyGithub adapter is `agentfactory.forge.github`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

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
