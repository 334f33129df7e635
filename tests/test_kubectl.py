"""`kubectl`, as a user runs it, against the emulator with the operator running: the bundled
examples apply with `--validate=false`, and `kubectl get` shows our printer columns filled in
by the operator (the emulator renders Tables from the CRDs, as an API server does)."""

from __future__ import annotations

import asyncio
import os
import shutil
from itertools import pairwise
from pathlib import Path

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from tests.kube import emulated, kubeconfig, running_operator, wait_for

ROOT = Path(__file__).parent.parent
API = "/apis/agentfactory.dev/v1alpha1/namespaces/default"


async def kubectl(config: Path, *argv: str) -> str:
    binary = shutil.which("kubectl")
    assert binary, "kubectl is needed: apt-get install kubernetes-client (see .ci/run)"
    process = await asyncio.create_subprocess_exec(
        binary, *argv, cwd=ROOT, env={**os.environ, "KUBECONFIG": str(config)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


def rows(table: str) -> list[list[str]]:
    """`kubectl get` output split at the header's column starts (cells may be empty)."""
    lines = table.splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    return [[line[a:b].strip() for a, b in pairwise([*starts, None])] for line in lines]


async def test_kubectl_applies_the_examples_and_shows_the_printer_columns(tmp_path: Path) -> None:
    async with emulated() as (_, url), running_operator(url, workdir=str(tmp_path / "op"),
                                                         resync_seconds=2):  # fmt: skip
        cfg = kubeconfig(tmp_path / "kubeconfig", url)
        applied = await kubectl(cfg, "--validate=false", "apply", "-f", "examples/")
        assert "factoryspec.agentfactory.dev/webshop created" in applied
        assert "agenttask.agentfactory.dev/fix-cart-total created" in applied
        # The example's repository is a bundle beside the file, for `agentfactory local`; in a
        # cluster it cannot be cloned, and the task says so instead of retrying in silence.
        stuck = await wait_for(url, f"{API}/agenttasks", "fix-cart-total",
                               lambda o: "cannot advance" in (o.get("status") or {}).get(
                                   "message", ""))  # fmt: skip
        assert stuck["status"]["phase"] == "Planning"
        assert "plan #1 cannot advance: git clone" in stuck["status"]["message"]
        await wait_for(
            url,
            f"{API}/factoryspecs",
            "webshop",
            lambda o: (o.get("status") or {}).get("tasks", {}).get("active") == 1,
        )
        tasks = rows(await kubectl(cfg, "get", "agenttasks"))
        assert tasks[0] == ["NAME", "FACTORY", "PHASE", "STAGE", "ATTEMPT", "PR", "AGE"]
        by_name = {row[0]: row for row in tasks[1:]}
        assert by_name["fix-cart-total"][1:5] == ["webshop", "Planning", "plan", "1"]
        assert by_name["discount-codes"][1:3] == ["webshop", "Pending"]
        wide = rows(await kubectl(cfg, "get", "agenttasks", "-o", "wide"))
        assert wide[0][-1] == "MESSAGE"
        factories = rows(await kubectl(cfg, "get", "factoryspecs"))
        assert factories[0] == ["NAME", "REPO", "ACTIVE", "MERGED", "ATTENTION", "AGE"]
        assert factories[1][:4] == ["webshop", "webshop.bundle", "1", "0"]
        # The example's repository is a bundle beside the file, for `agentfactory local`; in a
        # cluster it cannot be cloned, and the task says so instead of retrying in silence.
        assert (
            "plan #1 cannot advance: git clone"
            in wide[1 + list(by_name).index("fix-cart-total")][-1]
        )
        both = await kubectl(cfg, "get", "factory")  # the category lists both kinds
        assert "agenttask.agentfactory.dev/order-history" in both
        assert "factoryspec.agentfactory.dev/webshop" in both
