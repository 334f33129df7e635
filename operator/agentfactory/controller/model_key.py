"""Trying a factory's model key on reconcile, as its forge credentials are tried: a key the
model API refuses makes the factory not Ready before any task spends an attempt on it."""

from __future__ import annotations

import hashlib
import logging
import time

import anthropic

from agentfactory.agent.llm import said_by_the_api

log = logging.getLogger(__name__)
#: How long a verdict on a key stands: a key is tried once per this, not once per reconcile.
TRIED_SECONDS = 600.0
_tried: dict[tuple[str, str | None], tuple[float, str | None]] = {}


async def refused(key: str, base_url: str | None, secret: str) -> str | None:
    """Why the model API refuses *key* (from *secret*), or None when it takes it, or cannot be
    asked (an unreachable API says nothing about the key)."""
    fingerprint = (hashlib.sha256(key.encode()).hexdigest(), base_url)
    now = time.monotonic()
    if (known := _tried.get(fingerprint)) is not None and now - known[0] < TRIED_SECONDS:
        return known[1]
    client = anthropic.AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0, timeout=10)
    verdict = None
    try:
        await client.models.list(limit=1)
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
        verdict = (f"spec.agents.apiKeySecretRef: the model API refused the key in Secret"
                   f" '{secret}' ({exc.status_code} {said_by_the_api(exc)}); put a valid key"
                   " there")  # fmt: skip
    except anthropic.APIError as exc:
        log.warning("the model key in Secret %s was not tried: %s", secret, exc)
    finally:
        await client.close()
    _tried[fingerprint] = (now, verdict)
    return verdict
