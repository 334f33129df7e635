"""GitHub through PyGithub: installation tokens minted per pod and role (this module), and the
forge operations on branches, pull requests, checks and merges (issue 6, in progress).

Tokens: the App authenticates with a short-lived JWT signed by its private key, then asks for
an installation token restricted to the one repository and to the permissions the role needs
(`core.github.role_permissions`). PyGithub's `get_access_token` cannot restrict repositories,
so the request goes through the integration's own requester (PyGithub's public way to make a
call it has no method for), with the App's JWT auth and PyGithub's retry policy (rate limits,
secondary rate limits and 5xx, with backoff).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from github import Auth, GithubException, GithubIntegration, GithubRetry

if TYPE_CHECKING:
    from agentfactory.core.github import GitHubRepository


class GitHubError(Exception):
    """A GitHub call failed; the message names the likely fix."""


@dataclass(frozen=True)
class MintedToken:
    """An installation token as GitHub granted it."""

    token: str
    expires_at: datetime
    permissions: dict[str, str]
    repositories: list[str]

    def __repr__(self) -> str:  # never the token itself, in logs or tracebacks
        return f"MintedToken(repositories={self.repositories}, permissions={self.permissions})"


@dataclass
class GitHubApp:
    """A GitHub App installation that mints tokens for one repository."""

    repository: GitHubRepository
    app_id: str
    installation_id: int
    private_key: str
    seconds_between_requests: float = 0.25
    """PyGithub's pacing (GitHub asks integrators to serialize and pace their calls)."""

    def __post_init__(self) -> None:
        self._integration = GithubIntegration(
            auth=Auth.AppAuth(self.app_id, self.private_key),
            base_url=self.repository.api_url,
            retry=GithubRetry(total=5),
            seconds_between_requests=self.seconds_between_requests,
            seconds_between_writes=self.seconds_between_requests,
            user_agent="agentfactory",
        )

    def __repr__(self) -> str:
        return f"GitHubApp({self.app_id}, installation {self.installation_id})"

    def mint(self, permissions: dict[str, str]) -> MintedToken:
        """A token for this repository only, with exactly *permissions*."""
        body = {"repositories": [self.repository.name], "permissions": permissions}
        try:
            _headers, data = self._integration.requester.requestJsonAndCheck(
                "POST", f"/app/installations/{self.installation_id}/access_tokens", input=body
            )
        except GithubException as exc:
            raise GitHubError(self._explain(exc)) from None
        return _token(data)

    def _explain(self, exc: GithubException) -> str:
        message = (exc.data or {}).get("message", "") if isinstance(exc.data, dict) else ""
        where = f"GitHub App {self.app_id}, installation {self.installation_id}"
        fixes = {
            401: "the App id or private key is wrong: check the Secret's app-id and private-key",
            403: "the installation is suspended or lacks a permission: check the App's settings",
            404: "no such installation: check the Secret's installation-id",
            422: f"the installation cannot grant this: install the App on"
            f" {self.repository.full_name} with the permissions the factory needs",
        }
        fix = fixes.get(exc.status, "GitHub refused the request")
        return f"minting a token ({where}): {exc.status} {message}: {fix}"


def _token(data: dict[str, Any]) -> MintedToken:
    expires = str(data["expires_at"]).replace("Z", "+00:00")
    return MintedToken(
        token=str(data["token"]),
        expires_at=datetime.fromisoformat(expires),
        permissions=dict(data.get("permissions") or {}),
        repositories=[str(r["name"]) for r in data.get("repositories") or []],
    )
