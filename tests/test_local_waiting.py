"""`agentfactory local` waits on its running attempts through asyncio wrappers: an attempt
that fails after the wait (a Ctrl-C kills its sandbox's git clone) must not surface as a
traceback from a wrapper nobody read (found by test_ctrl_c_says_how_to_resume_and_the_run_resumes
in CI)."""

from __future__ import annotations

import asyncio
import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentfactory.core.forges import ForgeError
from agentfactory.local.driver import first_ended


async def test_an_attempt_failing_after_the_wait_leaves_no_unread_error() -> None:
    unread: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context))
    release = threading.Event()

    def killed_clone() -> str:
        release.wait()
        raise ForgeError("git clone --quiet failed: ")

    with ThreadPoolExecutor(2) as pool:
        quick, slow = pool.submit(lambda: "done"), pool.submit(killed_clone)
        await first_ended([quick, slow])  # the quick one ended; the slow one still runs
        release.set()
        await first_ended([slow])  # its error reaches the first wrapper before this one
    with pytest.raises(ForgeError):
        slow.result()
    await asyncio.sleep(0)  # reason: one turn of the loop runs the wrappers' callbacks
    del quick, slow  # the driver lets go of an attempt's future once it is read
    gc.collect()
    assert unread == []
