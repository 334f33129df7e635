"""`agentfactory run` where the cluster is not ready for it: it stops at once and says why,
rather than running without watching anything."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import kopf
import yaml
from testbed.apiserver import free_port

from agentfactory.cli import main
from agentfactory.controller import settings
from agentfactory.kube.auth import Connection, connect

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
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


async def test_kopf_logs_in_with_the_operators_client_once_per_token(tmp_path: Path) -> None:
    # kopf tells a refused credential from a new one by equality: a new session on every
    # login would make a token the server refuses look new each time, without end.
    memo = kopf.Memo()
    settings.use(Connection(server="https://127.0.0.1:6443"))
    first = await settings.login(memo=memo)
    assert await settings.login(memo=memo) is first
    assert first.aiohttp_session.headers["User-Agent"].startswith("kopf agentfactory/")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "rotated"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    settings.use(connect(str(kubeconfig)))
    rotated = await settings.login(memo=memo)
    assert rotated is not first
    assert rotated.aiohttp_session.headers["Authorization"] == "Bearer rotated"
    for login in (first, rotated):
        await login.aiohttp_session.close()


def test_an_api_server_that_cannot_be_reached_is_said_once_and_the_run_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing listens there: kopf would retry its start-up every minute, with a traceback.
    url = f"https://127.0.0.1:{free_port()}"
    assert main(["run", "--server", url, "--standalone", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"agentfactory run: cannot use the API server {url} (from --server)" in err
    assert "Cannot connect to host" in err and "Traceback" not in err
