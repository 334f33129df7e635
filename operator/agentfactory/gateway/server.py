"""The model gateway: the only holder of the model key, between agents and the Messages API.

Agents reach it as their `ANTHROPIC_BASE_URL` with an attempt token as their key (the SDK
sends it as `x-api-key` or `Authorization: Bearer`). For each request it checks the token,
asks the ledger whether the request may start, forwards it with the real key, passes the
answer back as it comes (streams chunk by chunk), and charges the attempt what the API said
it used. A client that goes away mid-stream does not stop the count: the gateway reads the
stream to its end, so the attempt is charged what the API billed, however its pod ended.

Routes: `POST /v1/messages` (whole or streamed), `POST /v1/messages/count_tokens`, `GET
/v1/models`; for the operator (with the ledger reader's token): `GET /ledger/{namespace}/
{attempt}` and `POST /ledger/{namespace}/{attempt}/close`; `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from agentfactory.core.grants import GrantError, reader_token, verify
from agentfactory.gateway.ledger import Ledger, Refusal, StreamMeter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agentfactory.core.grants import Grant

DEFAULT_UPSTREAM = "https://api.anthropic.com"
#: Request headers passed on to the API (everything else, the agent's token included, stays).
FORWARDED = ("anthropic-version", "anthropic-beta", "content-type", "accept", "user-agent")
#: Answer headers passed back to the agent.
RETURNED = (
    "content-type", "request-id", "retry-after", "retry-after-ms", "x-should-retry",
    "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-tokens-remaining",
)  # fmt: skip


def _error(status: int, kind: str, message: str, retry_after: float | None = None) -> web.Response:
    headers = {} if retry_after is None else {"retry-after": str(max(1, round(retry_after)))}
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status, headers=headers)  # fmt: skip


def _token(request: web.Request) -> str:
    bearer = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip()


class KeyUnavailableError(Exception):
    """The model key a grant's requests need cannot be had; the message says why."""


@dataclass
class Gateway:
    """The gateway's state: its signing key, the model keys, the ledger, the client."""

    signing_key: bytes
    model_key: Callable[[Grant], Awaitable[str]]
    """The model key a grant's requests go out with (the gateway's own, or its factory's)."""
    upstream: str = DEFAULT_UPSTREAM
    ledger: Ledger = field(default_factory=Ledger)
    clock: Callable[[], float] = time.time
    forwarded: int = 0
    """Requests passed on to the API."""
    settle_seconds: float = 120
    """How long closing an attempt waits for its requests in flight to be charged (a stream
    whose pod died is read on to its end)."""
    _session: aiohttp.ClientSession | None = None
    _settled: asyncio.Condition | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.messages)
        app.router.add_get("/v1/models", self.messages)
        app.router.add_get("/ledger/{namespace}/{attempt}", self.read)
        app.router.add_post("/ledger/{namespace}/{attempt}/close", self.close)
        app.router.add_get("/healthz", self.healthz)
        app.on_cleanup.append(self._closed)
        return app

    async def _closed(self, app: web.Application) -> None:
        del app
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No total timeout: a stream lasts as long as the answer; the agent's own
            # deadline bounds it.
            connector = aiohttp.TCPConnector(
                limit=0, enable_cleanup_closed=sys.version_info < (3, 12, 7)
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)
            )
        return self._session

    async def healthz(self, request: web.Request) -> web.Response:
        del request
        return web.Response(text="ok")

    def _reader(self, request: web.Request) -> web.Response | None:
        if _token(request) != reader_token(self.signing_key):
            return _error(401, "authentication_error", "the ledger is the operator's to read")
        return None

    async def read(self, request: web.Request) -> web.Response:
        if (refused := self._reader(request)) is not None:
            return refused
        key = f"{request.match_info['namespace']}/{request.match_info['attempt']}"
        spent = self.ledger.attempts.get(key)
        if spent is None:
            return web.json_response({"attempt": key, "requests": 0, "usage": None})
        return web.json_response({"attempt": key, "requests": spent.requests,
                                  "closed": spent.closed,
                                  "usage": spent.usage.model_dump(by_alias=True)})  # fmt: skip

    async def close(self, request: web.Request) -> web.Response:
        if (refused := self._reader(request)) is not None:
            return refused
        key = f"{request.match_info['namespace']}/{request.match_info['attempt']}"
        spent = self.ledger.close(key)
        # What is in flight still counts: wait (bounded) until it is charged.
        with contextlib.suppress(TimeoutError):
            async with self._condition():
                await asyncio.wait_for(self._condition().wait_for(lambda: spent.in_flight == 0),
                                       self.settle_seconds)  # fmt: skip
        return web.json_response({"attempt": key, "requests": spent.requests, "closed": True,
                                  "settled": spent.in_flight == 0,
                                  "usage": spent.usage.model_dump(by_alias=True)})  # fmt: skip

    def _condition(self) -> asyncio.Condition:
        if self._settled is None:
            self._settled = asyncio.Condition()
        return self._settled

    async def messages(self, request: web.Request) -> web.StreamResponse:
        try:
            grant = verify(_token(request), self.signing_key, self.clock())
        except GrantError as exc:
            return _error(401, "authentication_error", f"agentfactory gateway: {exc}")
        body = await request.read() if request.method == "POST" else b""
        metered = request.path == "/v1/messages"
        refusal: Refusal | None = self.ledger.admit(grant, self.clock()) if metered else None
        if refusal is not None:
            return _error(refusal.status, refusal.kind, refusal.message, refusal.retry_after)
        try:
            return await self._forward(request, grant, body, metered)
        finally:
            if metered:
                self.ledger.release(grant)
                async with self._condition():
                    self._condition().notify_all()

    async def _forward(
        self, request: web.Request, grant: Grant, body: bytes, metered: bool
    ) -> web.StreamResponse:
        headers = {k: v for k in FORWARDED if (v := request.headers.get(k)) is not None}
        try:
            headers["x-api-key"] = await self.model_key(grant)
        except KeyUnavailableError as exc:
            return _error(401, "authentication_error", f"agentfactory gateway: {exc}")
        url = (grant.upstream or self.upstream).rstrip("/") + request.path_qs
        self.forwarded += 1
        try:
            upstream = await self._client().request(request.method, url, data=body or None,
                                                    headers=headers)  # fmt: skip
        except aiohttp.ClientError as exc:
            return _error(502, "api_error", f"agentfactory gateway: the model API could not be"
                                            f" reached: {exc}")  # fmt: skip
        async with upstream:
            returned = {k: v for k in RETURNED if (v := upstream.headers.get(k)) is not None}
            if not upstream.headers.get("content-type", "").startswith("text/event-stream"):
                data = await upstream.read()
                if metered and upstream.status == 200:
                    self._charge(grant, data)
                return web.Response(body=data, status=upstream.status, headers=returned)
            answer = web.StreamResponse(status=upstream.status, headers=returned)
            await answer.prepare(request)
            meter = StreamMeter()
            gone = False
            async for chunk in upstream.content.iter_any():
                meter.feed(chunk)
                if gone:
                    continue  # read on: the attempt is charged what the API billed
                try:
                    await answer.write(chunk)
                except (ConnectionError, aiohttp.ClientConnectionResetError):
                    gone = True
            if meter.usage:
                self.ledger.record(grant, meter.model or _model(body), meter.usage)
            if not gone:
                await answer.write_eof()
            return answer

    def _charge(self, grant: Grant, data: bytes) -> None:
        try:
            message: Any = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict) and isinstance(message.get("usage"), dict):
            self.ledger.record(grant, str(message.get("model") or ""), message["usage"])


def _model(body: bytes) -> str:
    try:
        return str(json.loads(body).get("model") or "")
    except (ValueError, AttributeError):
        return ""
