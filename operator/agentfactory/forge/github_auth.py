"""GitHub's credentials and errors: installation tokens minted per pod and role, a plain
token, the pacing of retries, and what a refused call means.

Tokens: the App authenticates with a short-lived JWT signed by its private key, then asks for
an installation token restricted to the one repository and to the permissions the role needs
(`core.github.role_permissions`). PyGithub's `get_access_token` cannot restrict repositories,
so the request goes through the integration's own requester (PyGithub's public way to make a
call it has no method for), with the App's JWT auth and PyGithub's retry policy (rate limits,
secondary rate limits and 5xx, with backoff). A plain token (`GitHubToken`) works too, as it
is: it cannot be narrowed, which the factory's CredentialsValid condition says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from github.GithubException import RateLimitExceededExceedsMaxWait

from agentfactory.core.forges import ForgeBusyError, ForgeError
from github import (
    Auth,
    GithubException,
    GithubIntegration,
    GithubRetry,
    RateLimitExceededException,
)

if TYPE_CHECKING:
    from urllib3.util.retry import Retry

    from agentfactory.core.github import GitHubRepository


class GitHubError(ForgeError):
    """A GitHub call failed; the message names the likely fix."""


class GitHubBusyError(GitHubError, ForgeBusyError):
    """GitHub is rate limiting or failing (after PyGithub's retries): nothing is wrong with
    the request, and a later try should pass."""


def transient(exc: GithubException) -> bool:
    """A refusal a later try should pass: a rate limit (403 with its message or 429, PyGithub
    classes only the former) or GitHub failing (5xx)."""
    return isinstance(exc, RateLimitExceededException) or exc.status == 429 or exc.status >= 500


@dataclass(frozen=True)
class MintedToken:
    """An installation token as GitHub granted it."""

    token: str
    expires_at: datetime
    permissions: dict[str, str]
    repositories: list[str]

    def __repr__(self) -> str:  # never the token itself, in logs or tracebacks
        return f"MintedToken(repositories={self.repositories}, permissions={self.permissions})"


@dataclass(frozen=True)
class Pacing:
    """How the client paces its calls and waits out GitHub's limits (`PacedRetry` does the
    waiting: until a primary limit resets, a secondary limit's Retry-After, or
    `secondary_rate_wait` when GitHub gives none; 5xx with exponential backoff and jitter),
    never longer than `max_rate_limit_wait` for one wait."""

    seconds_between_requests: float = 0.25
    """GitHub asks integrators to serialize and pace their calls."""
    secondary_rate_wait: float = 60
    """GitHub: wait at least a minute after a secondary limit without Retry-After."""
    max_rate_limit_wait: float = 90
    """A longer wait fails the call instead: a worker's pass must not stall until an hourly
    limit resets; the task says it is rate limited and the next pass tries again."""
    retries: int = 5
    backoff_seconds: float = 1.0
    """The first wait after a 5xx; each next one doubles, plus up to as much again at random
    (so that workers refused together do not come back together)."""

    update_wait: float = 30
    """How long to wait for GitHub to move a branch after accepting an update of it (202),
    or to say whether a PR is mergeable (null while it computes), read again and again."""

    def update_polls(self) -> list[float]:
        """The waits between reads of something GitHub does later: doubling from half a
        second, `update_wait` in all."""
        waits: list[float] = []
        wait = 0.5
        while sum(waits) + wait <= self.update_wait:
            waits.append(wait)
            wait *= 2
        return waits

    def client_options(self) -> dict[str, Any]:
        retry = PacedRetry(total=self.retries, secondary_rate_wait=self.secondary_rate_wait,
                           max_rate_limit_wait=self.max_rate_limit_wait,
                           backoff_factor=self.backoff_seconds / 2,
                           backoff_jitter=self.backoff_seconds,
                           backoff_max=self.max_rate_limit_wait,
                           # GitHub answers a secondary limit with 429 as well as 403
                           status_forcelist=[*range(500, 600), 429],
                           # the last answer, not urllib3's RetryError: PyGithub turns it
                           # into the GithubException the forge explains
                           raise_on_status=False)  # fmt: skip
        return {"retry": retry, "seconds_between_requests": self.seconds_between_requests,
                "seconds_between_writes": self.seconds_between_requests,
                "user_agent": "agentfactory"}  # fmt: skip


class PacedRetry(GithubRetry):
    """PyGithub's retry (which reads a 403's rate limit from its body), with the two waits
    it leaves to urllib3 made GitHub's: a 429 without Retry-After is a secondary limit, waited
    at least `secondary_rate_wait` as for a 403 (urllib3 would retry at once); a Retry-After
    longer than `max_rate_limit_wait` fails the call at once (urllib3 would wait it out)."""

    def increment(self, method: str | None = None, url: str | None = None,  # type: ignore[override]
                  response: Any = None, *args: Any, **kwargs: Any) -> Retry:  # fmt: skip
        after = _seconds((response.headers or {}).get("Retry-After")) if response else None
        limit = self.max_rate_limit_wait
        if after is not None and limit is not None and after > limit:
            raise RateLimitExceededExceedsMaxWait(
                response.status, _body(self, response, url), dict(response.headers), wait=after
            )
        return super().increment(method, url, response, *args, **kwargs)

    def get_backoff_time(self) -> float:
        backoff = float(super().get_backoff_time())
        last = self.history[-1] if self.history else None
        if last is not None and last.status == 429:  # no Retry-After: sleep() asked us
            backoff = max(backoff, self.secondary_rate_wait)
            if self.max_rate_limit_wait is not None and backoff > self.max_rate_limit_wait:
                backoff = self.max_rate_limit_wait
        return backoff


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: urllib3 reads those itself
        return None


def _body(retry: GithubRetry, response: Any, url: str | None) -> Any:
    try:
        return json.loads(retry.get_content(response, url or ""))
    except (ValueError, TypeError):
        return {"message": response.reason}


@dataclass
class GitHubApp:
    """A GitHub App installation that mints tokens for one repository."""

    repository: GitHubRepository
    app_id: str
    installation_id: int
    private_key: str
    pacing: Pacing = field(default_factory=Pacing)

    def __post_init__(self) -> None:
        self._integration = GithubIntegration(
            auth=Auth.AppAuth(self.app_id, self.private_key),
            base_url=self.repository.api_url,
            **self.pacing.client_options(),
        )

    def __repr__(self) -> str:
        return f"GitHubApp({self.app_id}, installation {self.installation_id})"

    def close(self) -> None:
        """Close the App's HTTP connections."""
        self._integration.close()

    def mint(self, permissions: dict[str, str]) -> MintedToken:
        """A token for this repository only, with exactly *permissions*."""
        body = {"repositories": [self.repository.name], "permissions": permissions}
        try:
            _headers, data = self._integration.requester.requestJsonAndCheck(
                "POST", f"/app/installations/{self.installation_id}/access_tokens", input=body
            )
        except GithubException as exc:
            where = f"GitHub App {self.app_id}, installation {self.installation_id}"
            raise failed(f"minting a token ({where})", exc, self._fix(exc.status)) from None
        return _token(data)

    def _fix(self, status: int) -> str:
        fixes = {
            401: "the App id or private key is wrong: check the Secret's app-id and private-key",
            403: "the installation is suspended or lacks a permission: check the App's settings",
            404: "no such installation: check the Secret's installation-id",
            422: f"the installation cannot grant this: install the App on"
            f" {self.repository.full_name} with the permissions the factory needs",
        }
        return fixes.get(status, "GitHub refused the request")


@dataclass
class GitHubToken:
    """A plain token (a personal or fine-grained access token) for one repository: every
    "minted" token is this one, with whatever rights it was created with."""

    repository: GitHubRepository
    token: str = field(repr=False)
    pacing: Pacing = field(default_factory=Pacing)

    def mint(self, permissions: dict[str, str]) -> MintedToken:
        del permissions  # a plain token cannot be narrowed
        return MintedToken(self.token, datetime.max.replace(tzinfo=UTC), {}, [])

    def close(self) -> None:
        """Nothing to close: a plain token holds no connection."""


class Credentials(Protocol):
    """Where the forge's tokens come from: a GitHub App or a plain token."""

    repository: GitHubRepository
    pacing: Pacing

    def mint(self, permissions: dict[str, str]) -> MintedToken: ...
    def close(self) -> None: ...


def _token(data: dict[str, Any]) -> MintedToken:
    expires = str(data["expires_at"]).replace("Z", "+00:00")
    return MintedToken(
        token=str(data["token"]),
        expires_at=datetime.fromisoformat(expires),
        permissions=dict(data.get("permissions") or {}),
        repositories=[str(r["name"]) for r in data.get("repositories") or []],
    )


#: Re-mint the operator's token this long before it expires (a push must not outlive it).
TOKEN_MARGIN = timedelta(minutes=5)


def failed(what: str, exc: GithubException, fix: str = "") -> GitHubError:
    """The error for a refused call: GitHubBusyError when a later try should pass, else
    GitHubError, with *fix* (what to change) after what GitHub said."""
    if transient(exc):
        return GitHubBusyError(f"{what}: {_explain(exc)}")
    return GitHubError(f"{what}: {_explain(exc)}" + (f": {fix}" if fix else ""))


def message_of(exc: GithubException) -> str:
    """GitHub's own message in a refusal, with the details of a 422's `errors`."""
    if not isinstance(exc.data, dict):
        return str(exc.data or "")
    details = [_detail(e) for e in exc.data.get("errors") or []]
    return ": ".join([str(exc.data.get("message", "")), *filter(None, details)])


def _detail(error: Any) -> str:
    """One of a 422's `errors`: its message, or which field failed how."""
    if not isinstance(error, dict):
        return str(error)
    fields = (str(error[k]) for k in ("resource", "field", "code") if k in error)
    return str(error.get("message") or " ".join(fields))


def _explain(exc: GithubException) -> str:
    """What GitHub said, and for a limit, until when: PyGithub has already waited as long as
    the pacing allows, so the caller gives up for now and the next pass tries again."""
    message = message_of(exc)
    if not isinstance(exc, RateLimitExceededException):
        return f"{exc.status} {message}".strip()
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    reset = headers.get("x-ratelimit-reset", "")
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        until = datetime.fromtimestamp(int(reset), UTC).strftime("%H:%M:%SZ")
        return f"GitHub's rate limit is spent until {until}; the operator tries again then"
    after = headers.get("retry-after", "")
    return (f"GitHub's secondary rate limit ({message or exc.status}); the operator tries again"
            + (f" in {after} s" if after else " later"))  # fmt: skip
