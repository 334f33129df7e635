"""A small fault proxy in front of the real API server: the operator's kubeconfig points here
(TLS from the test CA, its bearer token passed through), and every request is forwarded as
it came, watches streamed. Tests inject what a cluster does to its clients: answers the server
would give (409, 500, 429) without forwarding, watch streams cut, a watch answered 410 Gone,
slow answers. `seen` keeps every request with the code it got. (The real server cannot be
made to do these on cue; the requests that pass are the real server's to answer.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import aiohttp.web
from testbed.apiserver import free_port

from agentfactory.kube.client import close_session, http_session

if TYPE_CHECKING:
    from testbed.apiserver import ControlPlane

FORWARDED = ("Authorization", "Content-Type", "Accept", "User-Agent")


@dataclass
class Request:
    """A request as the proxy saw it."""

    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    body: Any = None
    status: int = 0
    """The code the client got (0 while in flight)."""

    def _parts(self) -> list[str]:
        """/api/v1/namespaces/ns/pods/name/log -> [pods, name, log]; [] for discovery."""
        parts = self.path.strip("/").split("/")
        parts = parts[2:] if parts[0] == "api" else parts[3:] if parts[0] == "apis" else []
        if len(parts) > 2 and parts[0] == "namespaces":
            parts = parts[2:]
        return parts

    @property
    def plural(self) -> str | None:
        parts = self._parts()
        return parts[0] if parts else None

    @property
    def subresource(self) -> str | None:
        parts = self._parts()
        return parts[2] if len(parts) > 2 else None

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


@dataclass(frozen=True)
class Answer:
    """What a fault answers instead of the server: a Status with *code*, or, for a watch, an
    ERROR event carrying it (how a server says 410 Gone on an open watch)."""

    code: int
    reason: str
    message: str
    retry_after: int | None = None


@dataclass(frozen=True)
class Slow:
    """Forward the request, but only after *seconds* (a server, or a network, under load)."""

    seconds: float


Fault = Callable[[Request], Answer | Slow | None]


def _transport(response: aiohttp.ClientResponse) -> asyncio.Transport | None:
    connection = response.connection
    return None if connection is None else connection.transport


def status_body(answer: Answer) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": answer.message, "reason": answer.reason, "code": answer.code}  # fmt: skip


@dataclass
class FaultProxy:
    plane: ControlPlane
    faults: list[Fault] = field(default_factory=list)
    seen: list[Request] = field(default_factory=list)
    url: str = ""
    _streams: set[asyncio.Task[Any]] = field(default_factory=set)
    _runner: aiohttp.web.AppRunner | None = None
    _upstream: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> FaultProxy:
        trusted = ssl.create_default_context(cafile=str(self.plane.ca.path))
        self._upstream = http_session(trusted, auto_decompress=False)
        app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(*map(str, self.plane.ca.issue(
            "fault-proxy", server=True, hosts=("127.0.0.1",))))  # fmt: skip
        port = free_port()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=serving).start()
        self.url = f"https://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._upstream is not None:
            await close_session(self._upstream)

    def drop_watches(self) -> int:
        """Cut every open watch stream, as a restarting API server or a load balancer does;
        the number cut."""
        cut = [task for task in self._streams if not task.done()]
        for task in cut:
            task.cancel()
        return len(cut)

    async def _handle(self, incoming: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        raw = await incoming.read()
        body: Any = None
        if raw and incoming.content_type.endswith("json"):
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        request = Request(incoming.method, incoming.path, dict(incoming.query),
                          incoming.headers.get("User-Agent", ""), body)  # fmt: skip
        self.seen.append(request)
        for fault in self.faults:
            answer = fault(request)
            if isinstance(answer, Slow):
                await asyncio.sleep(answer.seconds)  # the fault itself: a late answer
            elif answer is not None:
                return self._answer(request, answer)
        assert self._upstream is not None
        headers = {k: incoming.headers[k] for k in FORWARDED if k in incoming.headers}
        async with self._upstream.request(
            incoming.method, self.plane.url + incoming.path_qs, data=raw or None,
            headers=headers, timeout=aiohttp.ClientTimeout(total=None),
        ) as upstream:  # fmt: skip
            request.status = upstream.status
            response = aiohttp.web.StreamResponse(status=upstream.status)
            for key in ("Content-Type", "Retry-After", "Warning"):
                if key in upstream.headers:
                    response.headers[key] = upstream.headers[key]
            await response.prepare(incoming)
            if not request.watch:
                await response.write(await upstream.read())
                return response
            task = asyncio.current_task()
            assert task is not None
            self._streams.add(task)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except asyncio.CancelledError:
                # Cut: the client sees its stream end without the chunked terminator. Both
                # sides are aborted, not closed: a TLS close waits for the peer's close_notify,
                # and a loop that ends first leaves the socket open (a ResourceWarning later).
                for transport in (incoming.transport, _transport(upstream)):
                    if transport is not None:
                        transport.abort()
                raise
            finally:
                self._streams.discard(task)
            return response

    def _answer(self, request: Request, answer: Answer) -> aiohttp.web.Response:
        request.status = answer.code
        if request.watch:  # a watch is answered 200, with the error as its one event
            event = {"type": "ERROR", "object": status_body(answer)}
            return aiohttp.web.Response(text=json.dumps(event) + "\n",
                                        content_type="application/json")  # fmt: skip
        headers = {} if answer.retry_after is None else {"Retry-After": str(answer.retry_after)}
        return aiohttp.web.json_response(status_body(answer), status=answer.code, headers=headers)
