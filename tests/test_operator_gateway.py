"""The model gateway through the operator: `agentfactory gateway` as a process of its own with
the chart's ServiceAccount and RBAC, stage pods run by the test kubelet holding a token for
their attempt, the strict fake as the model API. Agent images honouring the pod contract run
the roles, and a compromised one finds no key; a pod killed mid-stream is charged what the
API billed; a budget that runs out mid-session stops it at its next request."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

from testbed.cluster import EVERY_STAGE, FIX, FIX_CART, cluster, merged_tasks
from testbed.fakes.anthropic_api import API_KEY, Reply, tool
from testbed.gitutil import git
from testbed.scripts import CART_FIXED

from tests.test_operator_engines import CONTRACT_ONLY

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane
    from testbed.fakes.anthropic_api import FakeAnthropic


def charged(status: dict[str, Any]) -> int:
    """Every token the task's status counts."""
    usage = status["usage"]
    return sum(usage.get(k, 0) for k in ("inputTokens", "outputTokens", "cacheCreationTokens",
                                         "cacheReadTokens"))  # fmt: skip


def billed(fake: FakeAnthropic) -> int:
    """Every token the API counted, over all its answers."""
    return sum(u["input_tokens"] + u["output_tokens"] + u["cache_read_input_tokens"]
               + u["cache_creation_input_tokens"] for u in fake.usages)  # fmt: skip


async def test_image_engines_run_the_roles_and_no_pod_holds_the_model_key_only_a_token(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The planner and the code reviewer are a foreign agent image that only honours the pod
    # contract (a shell script); the implementer is a compromised one, which prints every
    # process's environment and command line in its pod, and the files under its inputs,
    # home, /tmp and /factory, before doing the same work. The plan reviewer calls the model.
    search = CONTRACT_ONLY.parent / "look-for-secrets.sh"
    image = {"engine": "image", "image": "registry.example.test/contract-only:1",
             "command": ["/bin/sh", str(CONTRACT_ONLY)]}  # fmt: skip
    hostile = {"engine": "image", "image": "registry.example.test/hostile:1",
               "command": ["/bin/sh", str(search)]}  # fmt: skip
    agents = {"roles": {"planner": image, "implementer": hostile, "codeReviewer": image}}
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], {}, agents=agents,
                       readable=(str(CONTRACT_ONLY.parent),)) as c:  # fmt: skip
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", [
            h.get("message") for h in task["status"]["history"]]  # fmt: skip
        assert c.started == EVERY_STAGE
        # The images read their contract, and the factory's step after each read its result:
        # the diff merged is the workspace's own, not the one the image only claims.
        said = c.kubelet.logs[c.ns, "fix-cart-code-review-1", "engine"]
        assert "code-reviewer working on: cart_total counts quantities." in said
        diff = git(remote, "show", "--format=", "main")
        assert "a diff the image only claims" not in diff and CART_FIXED in diff
        ran = c.kubelet.logs[c.ns, "fix-cart-implement-1", "agent"]
        result = json.loads(ran.splitlines()[-1].split(" ", 1)[1])
        assert result["diff"].startswith("diff --git a/shop/cart.py"), "the workspace's own"
        assert [c["status"] for c in result["implementation"]["checks"]] == ["passed"]
        # The hostile image found its attempt's token and the gateway, never a key.
        seen = c.kubelet.logs[c.ns, "fix-cart-implement-1", "engine"]
        assert "== end of the search" in seen and "== /proc/1\n" in seen, "it searched"
        assert "ANTHROPIC_API_KEY=afgw1." in seen and f"ANTHROPIC_BASE_URL={c.gateway.url}" in seen
        secrets = (API_KEY, c.gateway.signing_key.decode())
        for (_, pod, container), log in c.kubelet.logs.items():
            for secret in secrets:
                assert secret not in log, f"{pod}/{container}"
        # Every token the API counted is in the task's usage: the gateway's count.
        assert set(c.fake.keys) == {API_KEY}
        assert charged(task["status"]) == billed(c.fake) > 0


async def test_a_pod_killed_mid_stream_is_charged_what_the_api_billed(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    hold = threading.Event()
    long = Reply([{"type": "text", "text": "Reading the cart first. " * 60},
                  tool("read_file", path="shop/cart.py")], hold=hold)  # fmt: skip
    sessions = {("fix-cart", "implementer"): [[long], FIX]}
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], sessions) as c:
        assert await asyncio.to_thread(c.fake.holding.wait, 600), "the stream began"
        response = await c.http.delete(f"{c.url}{c.pods}/fix-cart-implement-1",
                                       params={"gracePeriodSeconds": "0"})  # fmt: skip
        assert response.status == 200
        await asyncio.wait_for(c.kubelet.killed(c.ns, "fix-cart-implement-1").wait(), 120)
        hold.set()  # the API goes on streaming to a client that is gone
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", [
            h.get("message") for h in task["status"]["history"]]  # fmt: skip
        assert merged_tasks(remote) == ["fix-cart"]
        history = [h.get("message", "") for h in task["status"]["history"]]
        assert any("fix-cart-implement-1 was deleted before it finished" in m for m in history)
        # The killed attempt reported nothing; the gateway charged what the API billed.
        assert charged(task["status"]) == billed(c.fake)


async def test_a_budget_that_runs_out_mid_session_stops_it_at_its_next_request(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    reads = [Reply([tool("read_file", path="shop/cart.py")]) for _ in range(10)]
    sessions: dict[tuple[str, str], Any] = {("fix-cart", "implementer"): [reads]}
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], sessions,
                       budget={"maxTokensPerTask": 3000}) as c:  # fmt: skip
        task = await c.phase("fix-cart", "NeedsAttention", "Merged", "Failed")
        status = task["status"]
        assert status["reason"] == "BudgetExhausted", status
        implementer = [r for r in c.fake.requests
                       if "You are the implementer" in str(r["system"])]  # fmt: skip
        assert 1 <= len(implementer) < len(reads), "stopped at a request, not at its end"
        assert charged(status) == billed(c.fake) >= 3000
