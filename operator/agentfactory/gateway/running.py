"""Running the gateway: in a thread of its own beside a synchronous caller (`agentfactory
local`, tests), or as the process of its own Deployment (`agentfactory gateway`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Iterator

    from agentfactory.gateway.server import Gateway


async def serve(gateway: Gateway, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start *gateway* on *host*:*port* (0: any free port); the runner and its URL."""
    runner = web.AppRunner(gateway.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


@contextlib.contextmanager
def in_thread(gateway: Gateway, host: str = "127.0.0.1") -> Iterator[str]:
    """*gateway* served on loopback from a thread of its own while the block runs; its URL."""
    loop = asyncio.new_event_loop()
    ready: list[tuple[web.AppRunner, str]] = []
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready.append(loop.run_until_complete(serve(gateway, host, 0)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="agentfactory-gateway", daemon=True)
    thread.start()
    started.wait()
    runner, url = ready[0]
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
