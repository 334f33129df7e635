"""Running the gateway: in a thread of its own on loopback beside a synchronous caller
(`agentfactory local`, tests), or as the process of its own Deployment (`agentfactory
gateway`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from agentfactory.core.grants import Grant, attempt_grant, mint
from agentfactory.gateway.server import DEFAULT_UPSTREAM, Gateway

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agentfactory.core.executors import Attempt
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.handoff import Limits


async def serve(gateway: Gateway, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start *gateway* on *host*:*port* (0: any free port); the runner and its URL."""
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


@dataclass
class LoopbackGateway:
    """A gateway on loopback in a thread of its own, started on first use; it holds the
    caller's model key (`ANTHROPIC_API_KEY`) and forwards to `ANTHROPIC_BASE_URL`."""

    gateway: Gateway = field(default_factory=lambda: _from_environment())
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        with self._lock:
            if self._thread is not None:
                return self.url
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._runner, self.url = loop.run_until_complete(
                    serve(self.gateway, "127.0.0.1", 0))  # fmt: skip
                started.set()
                loop.run_forever()

            self._loop = loop
            self._thread = threading.Thread(target=run, name="agentfactory-gateway", daemon=True)
            self._thread.start()
            started.wait()
            return self.url

    def stop(self) -> None:
        with self._lock:
            loop, runner, thread = self._loop, self._runner, self._thread
            if loop is None or runner is None or thread is None:
                return
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            self._loop = self._runner = self._thread = None

    def grant(self, attempt: Attempt, factory: FactorySpecSpec, limits: Limits) -> str:
        """A token for *attempt*, valid until its deadline (and a margin) or its closing."""
        given = attempt_grant(attempt, factory, limits, time.time())
        return mint(given, self.gateway.signing_key)


def _from_environment() -> Gateway:
    key = os.environ.get("ANTHROPIC_API_KEY", "")

    async def model_key(grant: Grant) -> str:
        del grant
        return key

    return Gateway(os.urandom(32), model_key,
                   upstream=os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_UPSTREAM)  # fmt: skip


@contextlib.contextmanager
def in_thread(gateway: Gateway) -> Iterator[str]:
    """*gateway* served on loopback while the block runs; its URL."""
    running = LoopbackGateway(gateway)
    try:
        yield running.start()
    finally:
        running.stop()
