"""Delivering the escalation webhook: one JSON POST, signed when the Secret holds an
`hmac-key`, tried three times (a connection error, 429 or 5xx is tried again; any other
refusal is final)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from agentfactory import __version__
from agentfactory.core.notification import SIGNATURE_HEADER, signature
from agentfactory.kube.client import http_session

TRIES = 3
TIMEOUT = aiohttp.ClientTimeout(total=10)


class NotifyError(Exception):
    """The webhook could not be delivered; the message says what the receiver did."""


async def post_notification(url: str, body: dict[str, Any], key: str | None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"agentfactory/{__version__}"}
    if key:
        headers[SIGNATURE_HEADER] = signature(key.strip(), data)
    last = ""
    async with http_session(None, timeout=TIMEOUT) as session:
        for attempt in range(TRIES):
            if attempt:
                await asyncio.sleep(2**attempt)  # the backoff itself: 2 s, then 4 s
            try:
                async with session.post(url, data=data, headers=headers) as answer:
                    if answer.status < 300:
                        return
                    last = f"the receiver answered {answer.status}"
                    if answer.status != 429 and answer.status < 500:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"the receiver could not be reached: {exc}"
    raise NotifyError(f"webhook not delivered after {attempt + 1} tries: {last}")
