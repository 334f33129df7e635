"""Keeping the runner's own secrets from the commands it runs.

The runner holds the model API key in its environment (the pod gets it from a Secret) and
runs commands as the same user: the factory's checks, which execute code the agent wrote.
The commands get a scrubbed environment, but a process of the same user may still read
another's `/proc/<pid>/environ` and `/proc/<pid>/mem`. A process that is not dumpable has
those entries owned by root, so the commands cannot read them; a prompt-injected agent that
writes a test to go looking finds nothing.
"""

from __future__ import annotations

import ctypes
import sys

#: prctl(2) option: whether the process may be dumped (and its /proc entries read by others).
PR_SET_DUMPABLE = 4


def hide_from_children() -> None:
    """Make this process non-dumpable (Linux; elsewhere there is no /proc to read)."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
