"""`agentfactory checkout`: the agent pod's init container. Clones the repository and checks
out the attempt's exact commit into the workspace.

A token from the credentials directory (file `token`) is handed to git through its
environment configuration (`GIT_CONFIG_*`), never on the command line (where `ps` shows it)
and never into `.git/config` (which the agent can read): the workspace keeps no credential.
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from agentfactory.core.gitauth import token_env

if TYPE_CHECKING:
    from pathlib import Path


class CheckoutError(Exception):
    """The checkout failed; the message says what git said (never the token)."""


class AccessRefusedError(CheckoutError):
    """The forge refused the credentials: the factory's set-up, which no retry mends."""


#: What git says when the remote refuses who is asking (HTTP 401/403, a denied push).
_REFUSED = ("Authentication failed", "could not read Username", "returned error: 401",
            "returned error: 403", "Permission to", "Permission denied")  # fmt: skip

#: The checkout command's exit code for refused credentials (the pod reader tells it apart).
EXIT_ACCESS_REFUSED = 3


def _env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env | token_env(token)


def checkout(*, repo: str, ref: str, dest: Path, credentials: Path | None) -> None:
    """Clone *repo* into *dest* and check out *ref* (a commit), detached."""
    token_file = credentials / "token" if credentials else None
    token = token_file.read_text().strip() if token_file and token_file.is_file() else None
    env = _env(token)
    for args in (
        ["clone", "--quiet", "--no-checkout", repo, str(dest)],
        ["-C", str(dest), "checkout", "--quiet", "--detach", ref],
    ):
        result = subprocess.run(  # noqa: S603 - fixed argv
            ["git", *args],  # noqa: S607 - git from PATH by design
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.strip()
            if token:
                message = message.replace(token, "***")
            said = f"git {args[0] if args[0] != '-C' else args[2]}: {message}"
            if any(words in message for words in _REFUSED):
                raise AccessRefusedError(f"the forge refused the credentials ({said})")
            raise CheckoutError(said)
