"""`kubectl` as a user runs it, against the real API server with the operator running under
the chart's RBAC: the bundled examples pass the server's validation of the CRD schemas, and
`kubectl get` shows our printer columns filled in by the operator."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.apiserver import scrubbed_env, tool
from testbed.identity import operator_kubeconfig
from testbed.kube import Api, running_operator, wait_for

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from agentfactory.kube.auth import connect

if TYPE_CHECKING:
    from testbed.apiserver import ControlPlane

ROOT = Path(__file__).parent.parent
API = "agentfactory.dev/v1alpha1/namespaces"


async def kubectl(config: Path, *argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        tool("kubectl"), *argv, cwd=ROOT, env=scrubbed_env(KUBECONFIG=str(config)),
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


async def test_kubectl_applies_the_examples_and_shows_the_printer_columns(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    operator = connect(str(operator_kubeconfig(control_plane, namespace, tmp_path / "op.cfg")))
    api, path = Api(control_plane.url, control_plane.ssl_context()), f"/apis/{API}/{namespace}"
    async with running_operator(operator, namespaces=[namespace], workdir=str(tmp_path / "op"),
                                resync_seconds=2):  # fmt: skip
        cfg = control_plane.kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
        applied = await kubectl(cfg, "apply", "-f", "examples/")
        assert "factoryspec.agentfactory.dev/webshop created" in applied
        assert "agenttask.agentfactory.dev/fix-cart-total created" in applied
        # The example's repository is a bundle beside the file, for `agentfactory local`; in a
        # cluster it cannot be cloned, and the task says so instead of retrying in silence.
        stuck = await wait_for(api, f"{path}/agenttasks", "fix-cart-total",
                               lambda o: "cannot advance" in (o.get("status") or {}).get(
                                   "message", ""))  # fmt: skip
        assert stuck["status"]["phase"] == "Planning"
        # kopf's own requests go through the operator's client (`settings.login`), which
        # leaves no socket open when its watches stop.
        agents = {
            e["userAgent"].split("/")[0]
            for e in control_plane.audit()
            if e.get("objectRef", {}).get("namespace") == namespace
            and e["objectRef"].get("resource") == "agenttasks"
            and e["verb"] == "list"
        }
        assert agents == {"kopf agentfactory", "agentfactory"}, agents
        assert "plan #1 cannot advance: git clone" in stuck["status"]["message"]
        await wait_for(
            api,
            f"{path}/factoryspecs",
            "webshop",
            lambda o: (o.get("status") or {}).get("tasks", {}).get("active") == 1,
        )
        # Each task's status is written by its own pass: the waiting one's may come later.
        await wait_for(api, f"{path}/agenttasks", "discount-codes",
                       lambda o: (o.get("status") or {}).get("phase") is not None)  # fmt: skip
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
