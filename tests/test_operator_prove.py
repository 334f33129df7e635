"""Tests that prove the fix, through the operator: the CI pod (run by the test kubelet) proves
the fix after the checks pass; a `fix` whose patch has no test goes back to the implementer,
and the one whose test fails on the base and passes on the head merges, its proof kept in
the task's status."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from testbed.cluster import cluster, merged_tasks
from testbed.fakes.anthropic_api import tool
from testbed.scripts import CART, CART_FIXED, implement, replace, task_doc

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

TOTALS = ("from shop.cart import cart_total\n\n\ndef test_two_items():\n"
          "    assert cart_total([(1, 2), (3, 1)]) == 5\n")  # fmt: skip


async def test_a_fix_whose_test_passes_on_the_base_goes_back_and_merges_once_it_proves(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    fix = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py", "tests/**"],
                   kind="fix")  # fmt: skip
    passes_anyway = ("from shop.cart import cart_total\n\n\ndef test_empty_cart():\n"
                     "    assert cart_total([]) == 0\n")  # fmt: skip
    sessions = {("fix-cart", "implementer"): [
        implement(replace("shop/cart.py", CART, CART_FIXED),
                  tool("write_file", path="tests/test_empty.py", content=passes_anyway)),
        implement(tool("write_file", path="tests/test_empty.py", content=TOTALS)),
    ]}  # fmt: skip
    async with cluster(control_plane, tmp_path, remote, [fix], sessions) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        status = task["status"]
        assert status["phase"] == "Merged", status.get("message")
        said = [h["message"] for h in status["history"] if h["reason"] == "CIFailed"]
        assert said == ["CI failed: prove-fix"], said
        again = [r for r in c.fake.requests if "tests/test_empty.py::test_empty_cart" in
                 json.dumps(r["messages"][0])]  # fmt: skip
        assert again, "the redo was told which test proved nothing"
        proof = status["ci"]["proof"]
        assert proof["verdict"] == "proven" and proof["required"]
        assert [(t["test"], t["base"], t["head"]) for t in proof["tests"]] == [
            ("tests/test_empty.py::test_two_items", "failed", "passed")]  # fmt: skip
        assert merged_tasks(remote) == ["fix-cart"]
