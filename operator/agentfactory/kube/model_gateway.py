"""The operator's side of the model gateway: it mints each stage pod's attempt token (the pod
never holds the model key), and once the pod is done it closes the attempt at the gateway and
reads what the attempt spent there, which is what the task is charged."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from agentfactory.core.grants import attempt_grant, mint, reader_token
from agentfactory.kube.client import close_session, http_session
from agentfactory.manifests.agents import MODEL_TOKEN

if TYPE_CHECKING:
    from agentfactory.core.executors import Attempt
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.handoff import Limits

log = logging.getLogger("agentfactory.gateway")
__all__ = ["MODEL_TOKEN", "ModelGateway"]


@dataclass
class ModelGateway:
    """Where the gateway is (its Service URL) and the key grants are signed with."""

    url: str
    signing_key: bytes
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def token(self, attempt: Attempt, factory: FactorySpecSpec, limits: Limits) -> str:
        """The attempt's token: its limits, and its factory's endpoint and key Secret."""
        grant = attempt_grant(attempt, factory, limits, time.time(), with_key_secret=True)
        return mint(grant, self.signing_key)

    async def close(self, attempt: Attempt) -> dict[str, Any] | None:
        """End *attempt* at the gateway (its token is refused from now on) and return what it
        spent there; None when the gateway cannot say (the pod's own report counts then)."""
        if self._session is None:
            self._session = http_session(None, timeout=aiohttp.ClientTimeout(total=30))
        url = f"{self.url.rstrip('/')}/ledger/{attempt.namespace}/{attempt.pod}/close"
        headers = {"authorization": f"Bearer {reader_token(self.signing_key)}"}
        try:
            async with self._session.post(url, headers=headers) as answer:
                if answer.status != 200:
                    log.warning("the gateway answered %s closing %s: %s", answer.status,
                                attempt.pod, (await answer.text())[:300])  # fmt: skip
                    return None
                body = await answer.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("the gateway could not be reached closing %s: %s", attempt.pod, exc)
            return None
        usage = body.get("usage") if isinstance(body, dict) else None
        return dict(usage) if isinstance(usage, dict) else {}

    async def aclose(self) -> None:
        if self._session is not None:
            await close_session(self._session)
            self._session = None
