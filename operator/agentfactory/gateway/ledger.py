"""What every attempt has spent through the gateway, and what the gateway lets start.

The gateway counts usage from the model API's own answers (a whole message's `usage`, or a
stream's `message_start` and `message_delta`), never from what an agent says. Before a request
starts it asks the ledger: is the attempt still open, within its tokens and dollars, and is its
factory within its requests per minute and its concurrent streams? A refusal says which, in
words the agent (and the person reading its log) can act on.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentfactory.core.pricing import cost_usd
from agentfactory.core.task import Usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentfactory.core.grants import Grant

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Refusal:
    """Why a request may not start: an HTTP status, the API's error type, the message, and
    when to try again (for limits that pass)."""

    status: int
    kind: str
    message: str
    retry_after: float | None = None


@dataclass
class Spent:
    """One attempt's account."""

    usage: Usage = field(default_factory=Usage)
    requests: int = 0
    closed: bool = False
    in_flight: int = 0
    """Its requests started and not yet charged."""


@dataclass
class Ledger:
    """Usage per attempt, and each factory's requests in the last minute and in flight."""

    attempts: dict[str, Spent] = field(default_factory=dict)
    on_charge: Callable[[str, Usage], None] | None = None
    """Called with the attempt and the usage after every charge (metrics, tests)."""
    _recent: dict[str, collections.deque[float]] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    def spent(self, attempt_key: str) -> Spent:
        return self.attempts.setdefault(attempt_key, Spent())

    def admit(self, grant: Grant, now: float) -> Refusal | None:
        """Count a request as started, or say why it may not start."""
        spent = self.spent(grant.attempt_key)
        name, used = grant.attempt, spent.usage
        if spent.closed:
            said = f"attempt {name} has ended; its token is no longer valid"
            return Refusal(401, "authentication_error", said)
        if used.total_tokens >= grant.max_tokens:
            said = (f"agentfactory budget: attempt {name} has used {used.total_tokens} of its"
                    f" {grant.max_tokens} tokens (what is left of the task's"
                    " budget.maxTokensPerTask); no further request starts")  # fmt: skip
            return Refusal(402, "billing_error", said)
        if grant.max_cost_usd is not None and used.cost_usd >= grant.max_cost_usd:
            said = (f"agentfactory budget: attempt {name} has spent ${used.cost_usd:.4f} of its"
                    f" ${grant.max_cost_usd:.4f} (what is left of the task's"
                    " budget.maxCostUSDPerTask); no further request starts")  # fmt: skip
            return Refusal(402, "billing_error", said)
        recent = self._recent.setdefault(grant.factory_key, collections.deque())
        while recent and recent[0] <= now - WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= grant.requests_per_minute:
            wait = recent[0] + WINDOW_SECONDS - now
            said = (f"factory {grant.factory} reached its {grant.requests_per_minute} requests"
                    " per minute (agents.gateway.requestsPerMinute)")  # fmt: skip
            return Refusal(429, "rate_limit_error", said, wait)
        flying = self._in_flight.get(grant.factory_key, 0)
        if flying >= grant.concurrent_streams:
            said = (f"factory {grant.factory} has {flying} requests in flight, its"
                    " agents.gateway.concurrentStreams")  # fmt: skip
            return Refusal(429, "rate_limit_error", said, 1.0)
        recent.append(now)
        self._in_flight[grant.factory_key] = flying + 1
        spent.requests += 1
        spent.in_flight += 1
        return None

    def release(self, grant: Grant) -> None:
        """A started request has ended (answered, refused upstream, or cut) and is charged."""
        key = grant.factory_key
        self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)
        spent = self.spent(grant.attempt_key)
        spent.in_flight = max(0, spent.in_flight - 1)

    def record(self, grant: Grant, model: str, usage: dict[str, Any]) -> Usage:
        """Charge the attempt what the API said a request used; the priced usage."""
        counted = Usage(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cache_creation_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        )
        counted.cost_usd = cost_usd(model, counted)
        spent = self.spent(grant.attempt_key)
        spent.usage = spent.usage + counted
        if self.on_charge is not None:
            self.on_charge(grant.attempt_key, counted)
        return counted

    def close(self, attempt_key: str) -> Spent:
        """End an attempt: its token is refused from now on; what it spent."""
        spent = self.spent(attempt_key)
        spent.closed = True
        return spent


@dataclass
class StreamMeter:
    """Reads usage out of a server-sent event stream as it passes through."""

    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    _buffer: bytes = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while b"\n\n" in self._buffer:
            frame, self._buffer = self._buffer.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    self._event(line[5:].strip())

    def _event(self, data: bytes) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start":
            message = event.get("message") or {}
            self.model = str(message.get("model") or self.model)
            self.usage.update(message.get("usage") or {})
        elif event.get("type") == "message_delta":
            # Cumulative counts: the last one is the message's.
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items()
                               if v is not None})  # fmt: skip
