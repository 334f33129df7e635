"""How a token reaches git without being written down: as an HTTP header in git's
environment configuration (`GIT_CONFIG_*`), never on a command line (where `ps` shows it)
and never in `.git/config` (which an agent can read)."""

from __future__ import annotations

import base64


def token_env(token: str | None) -> dict[str, str]:
    """Environment variables that make git send *token* (none when there is no token)."""
    if not token:
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }
