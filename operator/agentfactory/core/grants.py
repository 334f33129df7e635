"""Attempt tokens: what the gateway lets one stage attempt do, signed by whoever launches it.

An agent never holds the model key. It holds a token the operator (or `agentfactory local`)
minted for its attempt alone: the task and attempt it is for, when it expires (the attempt's
deadline), what it may spend (the attempt's share of the task's budget), its factory's rate
limits, and where its requests go (the factory's endpoint and key Secret). All of it is signed
with HMAC-SHA256 under the gateway's signing key, so an agent can read its grant but change
nothing in it, and a token is useless once it expires or its attempt is closed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.core.executors import Attempt
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.handoff import Limits

PREFIX = "afgw1"
#: How long past its attempt's deadline a token stays valid (the operator closes it sooner).
MARGIN_SECONDS = 300


class GrantError(Exception):
    """A token the gateway does not honour; the message says why (never the token)."""


@dataclass(frozen=True)
class Grant:
    """What one attempt may do through the gateway."""

    namespace: str
    factory: str
    task: str
    attempt: str
    """The attempt's pod name (`<task>-<stage>-<n>`): one grant per attempt."""
    expires: float
    """Seconds since the epoch after which the token is refused."""
    max_tokens: int
    """Tokens this attempt may use: no request starts once they are used."""
    max_cost_usd: float | None = None
    """Dollars this attempt may spend, likewise."""
    requests_per_minute: int = 240
    """The factory's requests per minute, shared by all its attempts."""
    concurrent_streams: int = 16
    """The factory's requests in flight at once, shared by all its attempts."""
    upstream: str | None = None
    """The factory's Messages API endpoint (None: the gateway's default)."""
    key_secret: str | None = None
    """`<secret>/<key>` in the grant's namespace holding the model key (None: the gateway's
    own key)."""

    @property
    def factory_key(self) -> str:
        return f"{self.namespace}/{self.factory}"

    @property
    def attempt_key(self) -> str:
        return f"{self.namespace}/{self.attempt}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, f"{PREFIX}.{payload}".encode(), hashlib.sha256).digest())


def mint(grant: Grant, secret: bytes) -> str:
    """The token of *grant* under *secret*."""
    payload = _b64(json.dumps(asdict(grant), separators=(",", ":"), sort_keys=True).encode())
    return f"{PREFIX}.{payload}.{_sign(secret, payload)}"


def verify(token: str, secret: bytes, now: float) -> Grant:
    """The grant *token* carries, if *secret* signed it and it has not expired."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise GrantError("not an attempt token of this factory's gateway")
    _, payload, signature = parts
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise GrantError("the attempt token's signature does not match")
    try:
        grant = Grant(**json.loads(_unb64(payload)))
    except (ValueError, TypeError) as exc:
        raise GrantError(f"the attempt token does not read: {exc}") from None
    if grant.expires <= now:
        raise GrantError(f"the attempt token of {grant.attempt} has expired")
    return grant


def reader_token(secret: bytes) -> str:
    """The bearer token that reads the gateway's ledger (the operator's, never an agent's)."""
    return _b64(hmac.new(secret, b"agentfactory-gateway-ledger-reader", hashlib.sha256).digest())


def attempt_grant(
    attempt: Attempt, factory: FactorySpecSpec, limits: Limits, now: float, *,
    with_key_secret: bool = False,
) -> Grant:  # fmt: skip
    """The grant of one attempt: its contract's limits, its factory's rate limits and, for a
    gateway that serves many factories, the factory's endpoint and key Secret."""
    agents = factory.agents
    ref = agents.api_key_secret_ref if with_key_secret else None
    cap = agents.gateway.max_tokens_per_attempt or limits.max_tokens
    return Grant(
        namespace=attempt.namespace, factory=attempt.factory, task=attempt.task,
        attempt=attempt.pod, expires=now + limits.deadline_seconds + MARGIN_SECONDS,
        max_tokens=min(limits.max_tokens, cap),
        max_cost_usd=limits.max_cost_usd,
        requests_per_minute=agents.gateway.requests_per_minute,
        concurrent_streams=agents.gateway.concurrent_streams,
        upstream=agents.base_url if with_key_secret else None,
        key_secret=f"{ref.name}/{ref.key}" if ref is not None else None,
    )  # fmt: skip
