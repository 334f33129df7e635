"""`agentfactory run` where the cluster is not ready for it: it stops at once and says why,
rather than running without watching anything."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


async def test_without_the_crds_the_operator_exits_naming_them(
    bare_plane: ControlPlane, tmp_path: Path
) -> None:
    config = bare_plane.kubeconfig(tmp_path / "kubeconfig")  # a cluster, but not our CRDs
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentfactory", "run", "--kubeconfig", str(config),
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
