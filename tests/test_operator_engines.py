"""Engines through the operator: the same task, end to end on the real API server and the test
kubelet, with Claude Code (the real CLI, streaming from the strict fake Messages API) as the
implementer and the code reviewer (foreign agent images run the roles in
`test_operator_gateway.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.cluster import EVERY_STAGE, FIX_CART, cluster, merged_tasks
from testbed.gitutil import git
from testbed.scripts import CART, CART_FIXED, claude_code_edit, claude_code_verdict

from agentfactory.core.heartbeat import Heartbeat

if TYPE_CHECKING:
    from testbed.apiserver import ControlPlane

CONTRACT_ONLY = Path(__file__).resolve().parent.parent / "testbed" / "images" / "contract-only.sh"


async def test_claude_code_implements_and_reviews_a_task_to_merged(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    sessions = {("fix-cart", "implementer"): [claude_code_edit("shop/cart.py", CART, CART_FIXED)],
                ("fix-cart", "code-reviewer"): [claude_code_verdict()]}  # fmt: skip
    agents = {"roles": {"implementer": {"engine": "claude-code"},
                        "codeReviewer": {"engine": "claude-code"}}}  # fmt: skip
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], sessions, agents=agents) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE
        assert merged_tasks(remote) == ["fix-cart"]
        assert CART_FIXED in git(remote, "show", "main:shop/cart.py")
        # Which engine answered whom: Claude Code offers its own tools, our runner its own.
        engines = {}
        for request in c.fake.requests:
            system = json.dumps(request["system"])
            role = next(r for r in ("planner", "plan reviewer", "implementer", "code reviewer")
                        if f"You are the {r}" in system)  # fmt: skip
            tools = {t["name"] for t in request.get("tools", [])}
            engines.setdefault(role, set()).add(
                "claude-code" if "StructuredOutput" in tools else "builtin")  # fmt: skip
        assert engines == {"planner": {"builtin"}, "plan reviewer": {"builtin"},
                           "implementer": {"claude-code"},
                           "code reviewer": {"claude-code"}}  # fmt: skip
        assert all(c.fake.streamed), "every call streamed"
        # People watching the implement pod see Claude Code's turns as heartbeats.
        log = c.kubelet.logs[c.ns, "fix-cart-implement-1", "agent"]
        beats = [b for line in log.splitlines() if (b := Heartbeat.parse(line)) is not None]
        assert [b.tools for b in beats] == [("Read",), ("Edit",), ("StructuredOutput",)]
        usage = task["status"]["usage"]
        assert usage["cacheReadTokens"] > 0, "Claude Code's calls are metered too"
