"""The cluster the operator's end-to-end tests run in: the emulator, the test kubelet running
every stage pod in bubblewrap with the real agent runner, the fake Messages API, the
resources as `kubectl apply` would send them, and kopf for real in this process."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from tests.fakes.anthropic_api import API_KEY, FakeAnthropic
from tests.gitutil import git
from tests.kube import Emulator, emulated, running_operator, secret_doc, wait_for
from tests.kubelet import Kubelet
from tests.rbac import verb
from tests.scripts import CART, CART_FIXED, CHECK, Router, factory_doc, implement, replace, task_doc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.fakes.anthropic_api import Reply
    from tests.rbac import Grant

NS = "shop"
API = f"/apis/agentfactory.dev/v1alpha1/namespaces/{NS}"
TASKS = f"{API}/agenttasks"
PODS = f"/api/v1/namespaces/{NS}/pods"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
EVENTS = f"/api/v1/namespaces/{NS}/events"
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
class Cluster:
    url: str
    http: aiohttp.ClientSession
    kubelet: Kubelet
    emulator: Emulator
    remote: Path
    workdir: Path
    operator: contextlib.AsyncExitStack
    fake: FakeAnthropic
    """The Messages API the agents call."""

    async def start_operator(self) -> None:
        self.operator = contextlib.AsyncExitStack()
        await self.operator.enter_async_context(
            running_operator(
                self.url, workdir=str(self.workdir), resync_seconds=2, github_poll_seconds=1
            )
        )

    async def stop_operator(self) -> None:
        await self.operator.aclose()

    @property
    def started(self) -> list[str]:
        """The pods the kubelet started, by name, in order."""
        return [key.split("/")[1] for key in self.kubelet.started]

    async def pod(self, name: str, phase: str = "Running") -> dict[str, Any]:
        def reached(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") == phase

        return await wait_for(self.url, PODS, name, reached, within=120)

    async def create(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        doc["metadata"].setdefault("namespace", NS)
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
        response = await self.http.patch(f"{self.url}{TASKS}/{name}", json=body, headers=merge)
        assert response.status == 200, await response.text()

    async def phase(self, name: str, *phases: str, within: float = 180) -> dict[str, Any]:
        def reached(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in phases

        return await wait_for(self.url, TASKS, name, reached, within=within)


def factory(remote: Path, fake_url: str, **spec: Any) -> dict[str, Any]:
    doc = factory_doc(remote, **spec)
    doc["spec"]["agents"] = {"apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
                             "baseURL": fake_url, **doc["spec"].get("agents", {})}  # fmt: skip
    return doc


@asynccontextmanager
async def cluster(
    tmp_path: Path, remote: Path, tasks: list[dict[str, Any]],
    sessions: dict[tuple[str, str], list[list[Reply]]], *, in_process: bool = True,
    secrets: dict[str, dict[str, str]] | None = None, **spec: Any,
) -> AsyncIterator[Cluster]:  # fmt: skip
    """The emulator, the kubelet, the fake API and the resources (*secrets*: more Secrets by
    name, created before the factory); with *in_process* the operator too (otherwise the
    test runs `agentfactory run` processes: `operator_process`)."""
    goals = {t["spec"]["goal"]: t["metadata"]["name"] for t in tasks}
    with FakeAnthropic([Router(goals, sessions)], repeat_last=True) as fake:
        async with emulated() as (emulator, url), aiohttp.ClientSession() as http:
            kubelet = Kubelet(url, emulator, tmp_path / "kubelet", readable=[str(remote)])
            running = asyncio.create_task(kubelet.run())
            c = Cluster(url, http, kubelet, emulator, remote, tmp_path / "operator",
                        contextlib.AsyncExitStack(), fake)  # fmt: skip
            try:
                if in_process:
                    await c.start_operator()
                for name, data in {"anthropic": {"api-key": API_KEY}, **(secrets or {})}.items():
                    await c.create(SECRETS, secret_doc(name, data))
                await c.create(f"{API}/factoryspecs", factory(remote, fake.url, **spec))
                for task in tasks:
                    await c.create(TASKS, json.loads(json.dumps(task)))
                yield c
            finally:
                await c.stop_operator()
                await kubelet.stop()
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running


#: User-Agents of the operator's API clients: its own, and kopf's.
OPERATOR = ("agentfactory/",)
WITH_KOPF = ("agentfactory/", "kopf/")


def _requests_from(emulator: Emulator, agents: tuple[str, ...]) -> list[Any]:
    """The resource requests of the clients whose User-Agent starts with one of *agents*."""
    return [r for r in emulator.log if r.resource is not None
            and r.headers.get("User-Agent", "").startswith(agents)]  # fmt: skip


def operator_requests(
    emulator: Emulator, agents: tuple[str, ...] = OPERATOR
) -> collections.Counter[str]:
    """The operator's API requests by verb and resource (by its clients' User-Agents)."""
    return collections.Counter(
        f"{r.method.value} {r.resource.plural}{'/' + r.subresource if r.subresource else ''}"
        for r in _requests_from(emulator, agents)
    )


def operator_grants(emulator: Emulator) -> set[Grant]:
    """What RBAC had to allow for the operator's requests (its own and kopf's)."""
    return {
        (r.resource.group, r.resource.plural + (f"/{r.subresource}" if r.subresource else ""),
         verb(r.method.value, r.name, dict(r.params)))
        for r in _requests_from(emulator, WITH_KOPF)
        if r.resource.plural  # not discovery
    }  # fmt: skip


@asynccontextmanager
async def operator_process(
    url: str, workdir: Path, log: Path, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`agentfactory run` against the emulator at *url*, as a process of its own (logs to
    *log*); stopped with SIGTERM at the end if it still runs."""
    argv = [sys.executable, "-m", "agentfactory", "run", "--server", url,
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
