"""The test kubelet's node on the real API server: it stays Ready as a kubelet's does, by
renewing its Lease (a lapsed lease makes the node controller taint it unreachable, and the
scheduler then places nothing on it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.kube import Api, wait_for
from testbed.kubelet import kubelet_on

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


async def test_the_node_renews_its_lease(control_plane: ControlPlane, tmp_path: Path) -> None:
    api = Api(control_plane.url, control_plane.ssl_context())
    async with kubelet_on(control_plane, tmp_path) as kubelet:
        name = kubelet.node.name
        first = await wait_for(api, LEASES, name, lambda _: True, within=30)
        renewed = await wait_for(
            api, LEASES, name,
            lambda o: o["spec"]["renewTime"] != first["spec"]["renewTime"], within=30,
        )  # fmt: skip
        node = await wait_for(api, "/api/v1/nodes", name, lambda _: True)
    assert renewed["spec"]["holderIdentity"] == name
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True" and not node["spec"].get("taints")
