"""`agentfactory gateway`: the model gateway as a process of its own (the chart's Deployment).

It holds the model keys: each request's grant names its factory's key Secret, which the
gateway reads with its own ServiceAccount (get on Secrets, by name) and keeps for a minute.
A grant without one uses the key in the gateway's own environment (`ANTHROPIC_API_KEY`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory.gateway.running import serve
from agentfactory.gateway.server import DEFAULT_UPSTREAM, Gateway, KeyUnavailableError
from agentfactory.kube.client import Kube, path_of

if TYPE_CHECKING:
    from agentfactory.core.grants import Grant
    from agentfactory.kube.auth import Connection

log = logging.getLogger("agentfactory.gateway")
KEY_SECONDS = 60.0


@dataclass
class SecretKeys:
    """The model key of a grant: from the Secret it names, read through the API server."""

    kube: Kube
    own: str = ""
    """The key of grants that name no Secret."""
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)

    async def __call__(self, grant: Grant) -> str:
        if grant.key_secret is None:
            if not self.own:
                raise KeyUnavailableError("no model key: the factory names no"
                                          " spec.agents.apiKeySecretRef")  # fmt: skip
            return self.own
        name, key = grant.key_secret.split("/", 1)
        where = f"{grant.namespace}/{grant.key_secret}"
        cached = self._cache.get(where)
        if cached is not None and time.monotonic() - cached[0] < KEY_SECONDS:
            return cached[1]
        secret = await self.kube.get(path_of("v1", "secrets", grant.namespace, name))
        if secret is None:
            raise KeyUnavailableError(f"the Secret {name} that spec.agents.apiKeySecretRef"
                                      f" names is not in namespace {grant.namespace}")  # fmt: skip
        data = secret.get("data") or {}
        if key not in data:
            raise KeyUnavailableError(f"the Secret {name} has no key {key} (it has:"
                                      f" {', '.join(sorted(data)) or 'none'})")  # fmt: skip
        value = base64.b64decode(data[key]).decode().strip()
        self._cache[where] = (time.monotonic(), value)
        return value


async def run_gateway(
    connection: Connection, signing_key: bytes, host: str, port: int, upstream: str
) -> None:
    """Serve the gateway until SIGTERM or SIGINT."""
    async with Kube(connection=connection) as kube:
        keys = SecretKeys(kube, own=os.environ.get("ANTHROPIC_API_KEY", ""))
        gateway = Gateway(signing_key, keys, upstream=upstream or DEFAULT_UPSTREAM)
        runner, url = await serve(gateway, host, port)
        log.info("the model gateway listens on %s, forwarding to %s", url, gateway.upstream)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
