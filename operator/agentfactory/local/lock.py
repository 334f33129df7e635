"""One `agentfactory local` at a time per state directory: two drivers on one state would
each re-run the other's attempt in flight and disagree on the outcome."""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LOCK_FILE = "lock"


class StateLockedError(Exception):
    """Another process holds the state directory; the message names its pid."""


@contextlib.contextmanager
def holding(state: Path) -> Iterator[None]:
    """Hold *state*'s lock (an advisory `flock`, released by the kernel however the holder
    ends, so a killed run never leaves it stale) while the block runs."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StateLockedError(
            f"another `agentfactory local` (pid {holder}) is running on {state}; wait until it"
            " ends (or stop it with Ctrl-C, and it resumes later), then run this again"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
