"""`agentfactory run` where the cluster is not ready for it: it stops at once and says why,
rather than running without watching anything."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from kmock._internal.apps import Server

from tests.kube import BACKBONE, BUILTIN, Emulator, serve

if TYPE_CHECKING:
    from pathlib import Path


async def test_without_the_crds_the_operator_exits_naming_them(tmp_path: Path) -> None:
    async with Emulator() as emulator, Server(emulator) as server:
        serve(emulator, {**BACKBONE, **BUILTIN})  # a cluster, but not our CRDs
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentfactory", "run", "--server", str(server.url).rstrip("/"),
            "--standalone", "--workdir", str(tmp_path), "--metrics-port", "0",
            "--liveness-port", "0", "--log-format", "plain",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:  # it ran on without watching: the failure
                process.kill()
                await process.wait()
    assert process.returncode != 0
    text = out.decode()
    assert "factoryspecs.agentfactory.dev" in text and "agenttasks.agentfactory.dev" in text
    assert "crds.enabled" in text, text[-2000:]
