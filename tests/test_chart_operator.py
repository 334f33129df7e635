"""The operator the chart deploys is the one that works: `helm install` as the README's
quickstart does, the Deployment's pod scheduled onto the test kubelet's node and run from the
operator image's entrypoint with the chart's ServiceAccount token projected into it; it finds
the API server from inside its pod and takes a task to Merged under the chart's RBAC."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING

from testbed.apiserver import ROOT, free_port
from testbed.cluster import FIX_CART, factory, fixes, merged_tasks
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic
from testbed.kube import Api, secret_doc, wait_for
from testbed.kubelet import kubelet_on
from testbed.scripts import Router

from tests.helm import installed

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp
    from testbed.apiserver import ControlPlane

DOCKERFILE = ROOT / "sandbox-images" / "operator" / "Dockerfile"


def operator_entrypoint() -> list[str]:
    """The operator image's ENTRYPOINT, from its Dockerfile (the host's programs are the
    image's here)."""
    found = re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    assert found, "the operator image's ENTRYPOINT"
    return list(json.loads(found[1]))


async def judged_by_the_approvals_policy(http: aiohttp.ClientSession, collection: str) -> None:
    """Wait until the chart's approvals policy can judge a task. Its parameters are
    FactorySpecs, whose CRD the same install made: the API server's admission plugin finds
    that kind only once it has refreshed what it knows of the API, and refuses every task
    until then ("failed to find resource referenced by paramKind"). Nothing announces the
    refresh, so a server-side dry run of a create is repeated until that refusal stops,
    bounded by a deadline far beyond any refresh seen."""
    end = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < end:
        async with http.post(f"{collection}/agenttasks?dryRun=All",
                             json=json.loads(json.dumps(FIX_CART))) as tried:  # fmt: skip
            said = await tried.text()
            if "failed to find resource referenced by paramKind" not in said:
                assert tried.status == 201, said
                return
        await asyncio.sleep(0.2)  # reason: no event announces the admission plugin's refresh
    raise AssertionError("the approvals policy could not judge a task within 120 s")


async def test_the_operator_the_chart_deploys_merges_a_task(
    bare_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    namespace, image = "factory", "agentfactory/operator"
    # Pods share the host's network here, with no cluster DNS: the gateway's pod listens on a
    # free port of its own, which the operator and the agents reach on loopback.
    gateway = free_port()
    values = {"image": {"repository": image, "tag": "0.1.0"},
              "metrics": {"port": free_port()}, "livenessPort": free_port(),
              "operator": {"resyncSeconds": 2, "logFormat": "plain"},
              "gateway": {"port": gateway, "url": f"http://127.0.0.1:{gateway}"}}  # fmt: skip
    api = Api(bare_plane.url, bare_plane.ssl_context())
    goals = {FIX_CART["spec"]["goal"]: "fix-cart"}
    with FakeAnthropic([Router(goals, fixes())], repeat_last=True) as fake:
        async with (
            installed(bare_plane, values, tmp_path, namespace=namespace, release="agentfactory",
                      monitoring=False),
            # The operator pushes to the remote (a host path here, a git server in a cluster).
            kubelet_on(bare_plane, tmp_path / "kubelet", [], namespace,
                       {image: operator_entrypoint()}, [str(remote)]) as kubelet,
            api.session() as http,
        ):  # fmt: skip
            await wait_for(
                api,
                "/api/v1/nodes",
                kubelet.node.name,
                lambda o: not (o.get("spec") or {}).get("taints"),
                within=60,
            )
            pods = f"/api/v1/namespaces/{namespace}/pods"
            secrets = f"/api/v1/namespaces/{namespace}/secrets"
            agentfactory = f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}"
            async with http.post(
                bare_plane.url + secrets, json=secret_doc("anthropic", {"api-key": API_KEY}, "shop")
            ) as made:
                assert made.status == 201, await made.text()
            async with http.post(
                f"{bare_plane.url}{agentfactory}/factoryspecs", json=factory(remote, fake.url)
            ) as made:
                assert made.status == 201, await made.text()
            await judged_by_the_approvals_policy(http, f"{bare_plane.url}{agentfactory}")
            async with http.post(
                f"{bare_plane.url}{agentfactory}/agenttasks", json=json.loads(json.dumps(FIX_CART))
            ) as made:
                assert made.status == 201, await made.text()
            task = await wait_for(api, f"{agentfactory}/agenttasks", "fix-cart", lambda o: (
                o.get("status") or {}).get("phase") in ("Merged", "NeedsAttention", "Failed"),
                within=300)  # fmt: skip
            operators = [key for key in kubelet.started if "-fix-cart-" not in key
                         and key.split("/")[1].startswith("agentfactory-")
                         and "-gateway-" not in key]  # fmt: skip
            gateways = [key for key in kubelet.started if "agentfactory-gateway-" in key]
            log = (kubelet.root / operators[-1].replace("/", "_") / "operator.log").read_text()
            async with http.get(bare_plane.url + pods) as answer:
                running = (await answer.json())["items"]
    # A second operator pod means the first one ended: its status says why.
    assert len(operators) == 1, [(p["metadata"]["name"], p["status"]) for p in running]
    assert task["status"]["phase"] == "Merged", (task["status"].get("message"), log[-3000:])
    assert merged_tasks(remote) == ["fix-cart"]
    assert "credentials from the pod's service account" in log, log[:2000]
    user = f"system:serviceaccount:{namespace}:agentfactory"
    refused = [
        e["requestURI"]
        for e in bare_plane.audit()
        if e["user"]["username"] == user and e["responseStatus"].get("code") == 403
    ]
    assert refused == [], "the chart's RBAC allows all the deployed operator does"
    # The agents called the model through the chart's gateway, which alone held the key.
    assert len(gateways) == 1 and set(fake.keys) == {API_KEY}
    gateway_user = f"system:serviceaccount:{namespace}:agentfactory-gateway"
    read = [e["requestURI"] for e in bare_plane.audit() if e["user"]["username"] == gateway_user]
    assert read and all(uri.endswith("/secrets/anthropic") for uri in read), read
    (deployed,) = [p for p in running if p["metadata"]["name"].startswith("agentfactory-")
                   and "-gateway-" not in p["metadata"]["name"]]  # fmt: skip
    assert deployed["spec"]["serviceAccountName"] == "agentfactory"
    assert deployed["status"]["phase"] == "Running"
