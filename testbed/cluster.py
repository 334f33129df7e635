"""The cluster the operator's end-to-end tests run in: the real API server (testbed/apiserver.py),
the test kubelet running every stage pod bound to its Node in bubblewrap with the real agent
runner, the fake Messages API, the resources as `kubectl apply` would send them, and kopf for
real in this process with the chart's ServiceAccount and RBAC."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from agentfactory.kube.auth import connect
from agentfactory.kube.model_gateway import ModelGateway
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic
from testbed.gitutil import git
from testbed.identity import GATEWAY, RELEASE, account_kubeconfig, operator_kubeconfig
from testbed.kube import Api, NamespacePaths, running_operator, secret_doc, wait_for
from testbed.kubelet import Kubelet, kubelet_on
from testbed.scripts import (
    CART,
    CART_FIXED,
    CHECK,
    Router,
    factory_doc,
    implement,
    replace,
    task_doc,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import aiohttp

    from testbed.apiserver import ControlPlane
    from testbed.fakes.anthropic_api import Reply

FIX_CART = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
FIX = implement(replace("shop/cart.py", CART, CART_FIXED))


def fixes() -> dict[tuple[str, str], list[list[Reply]]]:
    """The implementer's scripted session (fresh per test: the fake consumes it)."""
    return {("fix-cart", "implementer"): [FIX]}


#: The pods of one pass through the pipeline, in order.
EVERY_STAGE = ["fix-cart-plan-1", "fix-cart-plan-review-1", "fix-cart-implement-1",
               "fix-cart-ci-1", "fix-cart-code-review-1"]  # fmt: skip
#: CI that runs long enough for a test to act while its pod runs.
CI_A_WHILE = [{"name": "test", "command": f"sleep 3; {CHECK}", "timeoutSeconds": 120}]


@dataclass
class Cluster(NamespacePaths):
    plane: ControlPlane
    ns: str
    """The test's namespace: the factory, its tasks, pods and the operator's RBAC live here."""
    api: Api
    """The API as the user who applies the manifests (an admin)."""
    http: aiohttp.ClientSession
    kubelet: Kubelet
    remote: Path
    workdir: Path
    kubeconfig: Path
    """The operator's: a token of the chart's ServiceAccount, bound by the chart's Role."""
    user: str
    operator: contextlib.AsyncExitStack
    fake: FakeAnthropic
    """The Messages API the gateway calls."""
    gateway: ModelGateway
    """The model gateway the agents call (`agentfactory gateway`, a process of its own)."""

    @property
    def url(self) -> str:
        return self.plane.url

    @property
    def tasks(self) -> str:
        return self.tasks_path

    async def start_operator(self) -> None:
        self.operator = contextlib.AsyncExitStack()
        await self.operator.enter_async_context(running_operator(
            connect(str(self.kubeconfig)), namespaces=[self.ns], workdir=str(self.workdir),
            resync_seconds=2, github_poll_seconds=1, gateway=self.gateway,
        ))  # fmt: skip

    async def stop_operator(self) -> None:
        await self.operator.aclose()
        await self.gateway.aclose()

    @property
    def started(self) -> list[str]:
        """The pods the kubelet started, by name, in order."""
        return [key.split("/")[1] for key in self.kubelet.started]

    async def pod(self, name: str, phase: str = "Running") -> dict[str, Any]:
        def reached(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") == phase

        return await wait_for(self.api, self.pods, name, reached, within=600)

    async def create(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc["metadata"].setdefault("namespace", self.ns)
        response = await self.http.post(self.url + collection, json=doc)
        assert response.status in (200, 201), await response.text()
        return dict(await response.json())

    async def get(self, path: str) -> Any:
        return await (await self.http.get(self.url + path)).json()

    async def items(self, collection: str) -> list[dict[str, Any]]:
        return list((await self.get(collection)).get("items", []))

    async def annotate(self, name: str, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        merge = {"Content-Type": "application/merge-patch+json"}
        response = await self.http.patch(f"{self.url}{self.tasks}/{name}", json=body,
                                         headers=merge)  # fmt: skip
        assert response.status == 200, await response.text()

    async def phase(self, name: str, *phases: str, within: float = 600) -> dict[str, Any]:
        """The task once it reaches one of *phases*. *within* is a safety net for a hang, not
        a speed limit: on two shared cores a whole pipeline has taken over three minutes."""

        def reached(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in phases

        return await wait_for(self.api, self.tasks, name, reached, within=within)

    def requests(self, agents: tuple[str, ...] = ("agentfactory/",)) -> collections.Counter[str]:
        """The operator's API requests by verb and resource, from the server's audit log."""
        return audited(self.plane, self.user, agents)

    def refused(self) -> list[str]:
        """The operator's requests (its own and kopf's) that RBAC or admission refused."""
        return [f"{e['verb']} {e['requestURI']}: {e['responseStatus'].get('message', '')}"
                for e in self.plane.audit() if e["user"]["username"] == self.user
                and e["responseStatus"].get("code") == 403]  # fmt: skip


def _signing_key(workdir: Path) -> tuple[bytes, Path]:
    key = os.urandom(32).hex().encode()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "gateway-signing-key").write_bytes(key)
    return key, workdir / "gateway-signing-key"


@asynccontextmanager
async def gateway_process(
    kubeconfig: Path, workdir: Path, upstream: str
) -> AsyncIterator[tuple[str, bytes]]:
    """`agentfactory gateway` as a process of its own, as the chart runs it: its URL and its
    signing key (which the operator signs attempt tokens with)."""
    key, key_file = _signing_key(workdir)
    argv = [sys.executable, "-m", "agentfactory", "gateway", "--listen", "127.0.0.1:0",
            "--signing-key-file", str(key_file), "--kubeconfig", str(kubeconfig),
            "--upstream", upstream]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    said: list[str] = []

    async def listening() -> str:
        async for raw in process.stderr:  # type: ignore[union-attr]
            line = raw.decode()
            said.append(line)
            if "listens on " in line:
                return line.split("listens on ", 1)[1].split(",")[0].strip()
        raise AssertionError(f"the gateway ended before it listened: {''.join(said)}")

    try:
        url = await asyncio.wait_for(listening(), 60)
        drain = asyncio.ensure_future(process.stderr.read())  # keep its pipe from filling
        yield url, key
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        await drain
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def factory(remote: Path, fake_url: str, **spec: Any) -> dict[str, Any]:
    doc = factory_doc(remote, **spec)
    # The fake Messages API listens on loopback over plain HTTP: allowed explicitly.
    doc["spec"]["agents"] = {"apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
                             "baseURL": fake_url, "allowHTTP": True,
                             **doc["spec"].get("agents", {})}  # fmt: skip
    return doc


@asynccontextmanager
async def cluster(
    plane: ControlPlane, tmp_path: Path, remote: Path, tasks: list[dict[str, Any]],
    sessions: dict[tuple[str, str], list[list[Reply]]], *, in_process: bool = True,
    secrets: dict[str, dict[str, str]] | None = None, chart: tuple[str, ...] = (),
    before: tuple[tuple[str, dict[str, Any]], ...] = (), unpullable: tuple[str, ...] = (),
    readable: tuple[str, ...] = (), **spec: Any,
) -> AsyncIterator[Cluster]:  # fmt: skip
    """A namespace of its own on the real API server with the chart's RBAC for the operator
    (*chart*: more `--set` values), a Node run by the test kubelet, the fake API and the
    resources (*secrets*: more Secrets by name, created before the factory; *before*: more
    objects, by the collection under the namespace they go in, created before the tasks;
    *unpullable*: images the registry does not have; *readable*: more host paths the pods
    may read, such as an agent image's script); with
    *in_process* the operator too (otherwise the test runs `agentfactory run` processes:
    `operator_process`)."""
    goals = {t["spec"]["goal"]: t["metadata"]["name"] for t in tasks}
    ns = plane.namespace("shop")
    config = operator_kubeconfig(plane, ns, tmp_path / "operator.kubeconfig", *chart)
    api = Api(plane.url, plane.ssl_context())
    with FakeAnthropic([Router(goals, sessions)], repeat_last=True) as fake:
        async with (
            gateway_process(
                account_kubeconfig(plane, ns, GATEWAY, tmp_path / "gateway.kubeconfig"),
                tmp_path / "gateway",
                fake.url,
            ) as (gateway, signing),
            api.session() as http,
            kubelet_on(
                plane, tmp_path / "kubelet", [str(remote), *readable], ns, unpullable=unpullable
            ) as kubelet,
        ):
            c = Cluster(plane, ns, api, http, kubelet, remote, tmp_path / "operator", config,
                        f"system:serviceaccount:{ns}:{RELEASE}", contextlib.AsyncExitStack(),
                        fake, ModelGateway(gateway, signing))  # fmt: skip
            try:
                if in_process:
                    await c.start_operator()
                for name, data in {"anthropic": {"api-key": API_KEY}, **(secrets or {})}.items():
                    await c.create(c.secrets, secret_doc(name, data, "shop"))
                await c.create(f"{c.api_path}/factoryspecs", factory(remote, fake.url, **spec))
                for collection, doc in before:
                    await c.create(f"/api/v1/namespaces/{ns}/{collection}", doc)
                for task in tasks:
                    await c.create(c.tasks, json.loads(json.dumps(task)))
                yield c
            finally:
                await c.stop_operator()
                await forget(http, plane.url, ns)


#: User-Agents of the operator's API clients: its own, and kopf's.
OPERATOR = ("agentfactory/",)
WITH_KOPF = ("agentfactory/", "kopf agentfactory/")


async def forget(http: aiohttp.ClientSession, url: str, ns: str) -> None:
    """Delete a test's namespace, its pods at once first: a pod still Pending would otherwise
    be bound to the next test's node before the namespace controller got to it."""
    await http.delete(f"{url}/api/v1/namespaces/{ns}/pods", params={"gracePeriodSeconds": "0"})
    await http.delete(f"{url}/api/v1/namespaces/{ns}")


METHODS = {"get": "GET", "list": "GET", "watch": "GET", "create": "POST", "patch": "PATCH",
           "update": "PUT", "delete": "DELETE", "deletecollection": "DELETE"}  # fmt: skip


def audited(
    plane: ControlPlane, user: str, agents: tuple[str, ...] = OPERATOR
) -> collections.Counter[str]:
    """The API requests of *user*'s clients whose User-Agent starts with one of *agents*, by
    verb and resource, as the server's audit log recorded them."""
    counted: collections.Counter[str] = collections.Counter()
    for event in plane.audit():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != user or not event.get("userAgent", "").startswith(agents):
            continue
        if not ref.get("resource"):
            continue  # discovery
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        counted[f"{METHODS[event['verb']]} {ref['resource']}{sub}"] += 1
    return counted


@asynccontextmanager
async def operator_process(
    where: str | Path, workdir: Path, log: Path, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`agentfactory run` as a process of its own (logs to *log*), against the emulator's URL
    or with a kubeconfig (a Path); stopped with SIGTERM at the end if it still runs."""
    connection = ["--server", where] if isinstance(where, str) else ["--kubeconfig", str(where)]
    argv = [sys.executable, "-m", "agentfactory", "run", *connection,
            "--workdir", str(workdir), "--liveness-port", "0", *flags]  # fmt: skip
    with log.open("a") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def merged_tasks(remote: Path) -> list[str]:
    log = git(remote, "log", "--format=%B", "main")
    return [line.split(": ")[1] for line in log.splitlines()
            if line.startswith("Agentfactory-Task: ")]  # fmt: skip
