"""A small assembly line on the instant kubelet (`testbed/instant.py`), for the fault and
bad-input tests: the real API server behind a fault proxy, a factory on a bare remote (or on
a fake GitHub) with three tasks (beta depends on alpha), and the check that after whatever
happened nothing was lost or doubled."""

from __future__ import annotations

import asyncio
import collections
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from testbed.cluster import forget, merged_tasks
from testbed.gitutil import bare_remote
from testbed.identity import operator_kubeconfig
from testbed.instant import End, InstantKubelet, factory, happy, task
from testbed.kube import Api, NamespacePaths, running_operator, secret_doc, wait_for, wait_gone
from testbed.node import Node

from agentfactory import API_VERSION
from agentfactory.kube.auth import connect
from tests.githubs import ALL, REPO
from tests.proxy import FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    import aiohttp
    from testbed.apiserver import ControlPlane
    from testbed.fakes.github_api import FakeGitHub

NAMES = ["alpha", "beta", "gamma"]  # beta depends on alpha
ENDED = ("Merged", "NeedsAttention", "Failed", "Cancelled")


@dataclass
class Line(NamespacePaths):
    plane: ControlPlane
    ns: str
    api: Api
    """The API as the user who applies the manifests (an admin), straight to the server."""
    http: aiohttp.ClientSession
    proxy: FaultProxy
    """What the operator talks to: the server behind the fault proxy."""
    kubelet: InstantKubelet
    remote: Path
    workdir: Path
    kubeconfig: Path
    """The operator's: the chart's ServiceAccount, through the proxy."""

    @property
    def url(self) -> str:
        return self.plane.url

    async def tasks(self) -> dict[str, dict[str, Any]]:
        async with self.http.get(f"{self.url}{self.tasks_path}") as answer:
            return {t["metadata"]["name"]: t for t in (await answer.json())["items"]}

    async def items(self, collection: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}{collection}") as answer:
            return list((await answer.json())["items"])

    async def create(self, collection: str, doc: dict[str, Any]) -> None:
        doc["metadata"]["namespace"] = self.ns
        async with self.http.post(f"{self.url}{collection}", json=doc) as answer:
            assert answer.status in (200, 201), await answer.text()

    async def ended(self, name: str, within: float = 120) -> dict[str, Any]:
        def done(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in ENDED

        return await wait_for(self.api, self.tasks_path, name, done, within=within)

    async def all_ended(self, within: float = 120) -> dict[str, dict[str, Any]]:
        for name in NAMES:
            await self.ended(name, within)
        return await self.tasks()


@asynccontextmanager
async def line(
    plane: ControlPlane, tmp_path: Path, script: Callable[[str, str, int], End | None] = happy,
    *, operator: bool = True, github: FakeGitHub | None = None,
    factory_spec: dict[str, Any] | None = None, **settings: float,
) -> AsyncIterator[Line]:  # fmt: skip
    """A namespace of its own on the real server, the instant kubelet on a Node of its own,
    the fault proxy in front of the server for the operator, a factory on a bare remote (or on
    *github*, with an App installation; *factory_spec*: more fields) and three tasks; with
    *operator*, kopf in this process with *settings* (otherwise the test runs
    `agentfactory run` with the line's kubeconfig)."""
    ns = plane.namespace("line")
    api = Api(plane.url, plane.ssl_context())
    node = Node(plane, name=f"node-{ns}", namespace=ns)
    kubelet = InstantKubelet(node, script)
    async with FaultProxy(plane) as proxy, api.session() as http, AsyncExitStack() as stack:
        config = operator_kubeconfig(plane, ns, tmp_path / "operator.kubeconfig")
        through = yaml.safe_load(config.read_text())
        through["clusters"][0]["cluster"]["server"] = proxy.url
        config.write_text(yaml.safe_dump(through))
        watching = asyncio.create_task(kubelet.run())

        async def teardown() -> None:
            await kubelet.stop()
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await http.delete(f"{plane.url}/api/v1/nodes/{node.name}")
            await forget(http, plane.url, ns)

        stack.push_async_callback(teardown)
        # A new node is tainted not-ready until the node controller sees it Ready: wait, so
        # that no test's first pods meet a taint a real cluster would have lifted long ago.
        await wait_for(api, "/api/v1/nodes", node.name,
                       lambda o: not (o.get("spec") or {}).get("taints"), within=60)  # fmt: skip
        ln = Line(plane, ns, api, http, proxy, kubelet, bare_remote(tmp_path),
                  tmp_path / "operator", config)  # fmt: skip
        on: dict[str, Any] = {}
        await ln.create(ln.secrets, secret_doc("anthropic", {"api-key": "unused"}, "line"))
        if github is not None:
            ln.remote = github.create_repository(REPO, ln.remote)
            github.install(7, REPO, **ALL)
            app = {"githubApp": {"secretName": "gh-app"}}
            on = {"repository": {"url": github.clone_url(REPO), "forge": "github",
                                 "allowHTTP": True, "credentials": app}}  # fmt: skip
            await ln.create(ln.secrets, secret_doc("gh-app", github.app_secret(7), "line"))
        await ln.create(
            f"/apis/{API_VERSION}/namespaces/{ns}/factoryspecs",
            factory(
                "line", ln.remote, concurrency={"maxActiveTasks": 3}, **on, **(factory_spec or {})
            ),
        )
        for doc in (task("alpha", "line", []), task("beta", "line", ["alpha"]),
                    task("gamma", "line", [])):  # fmt: skip
            await ln.create(ln.tasks_path, doc)
        if operator:
            await stack.enter_async_context(running_operator(
                connect(str(config)), namespaces=[ns], workdir=str(tmp_path / "operator"),
                resync_seconds=1, **settings))  # fmt: skip
        yield ln


async def assert_nothing_lost_or_doubled(
    line: Line, *, killed: bool = False, unscheduled: Callable[[str], bool] = lambda _: False
) -> dict[str, dict[str, Any]]:
    """Every task ended Merged, or NeedsAttention with its reason; each merged once; each
    pod created once and run once (but those *unscheduled* allows, which no node got); no pod or
    per-pod Secret left; one Event per transition. (When the
    operator was *killed*, the transition it had written but not yet announced keeps no
    Event: the status history, written first, is the record.)"""
    tasks = await line.all_ended()
    for name, obj in tasks.items():
        status = obj["status"]
        assert status["phase"] in ("Merged", "NeedsAttention"), (name, status.get("message"))
        if status["phase"] == "NeedsAttention":
            assert status.get("reason") and status.get("message"), name
    merged = [n for n, t in tasks.items() if t["status"]["phase"] == "Merged"]
    assert sorted(merged_tasks(line.remote)) == sorted(merged), "each merged task merged once"
    posts = collections.Counter(
        r.body["metadata"]["name"] for r in line.proxy.seen
        if r.method == "POST" and r.plural == "pods" and r.status == 201
    )  # fmt: skip
    assert all(count == 1 for count in posts.values()), f"a pod created twice: {posts}"
    # A POST the killed operator sent but whose answer it never read (the proxy saw no
    # status) may still have created its pod: it counts as sent, not as created twice.
    sent = {r.body["metadata"]["name"] for r in line.proxy.seen
            if r.method == "POST" and r.plural == "pods" and isinstance(r.body, dict)}  # fmt: skip
    started = line.kubelet.started
    assert len(started) == len(set(started)), f"a pod ran twice: {started}"
    assert set(started) <= sent, f"run, never sent: {set(started) - sent}"
    never = [pod for pod in posts if pod not in started]
    assert all(unscheduled(pod) for pod in never), f"created, never run: {never}"
    # A task that needs attention keeps its last failed pod for debugging (credentials gone);
    # nothing else is left.
    # The operator removes them in the pass that ended the task, after its status write, so
    # each is awaited on a watch (the ending is seen first).
    for pod in await line.items(line.pods):
        labels = pod["metadata"]["labels"]
        owner = tasks[labels["agentfactory.dev/task"]]["status"]["phase"]
        if labels.get("agentfactory.dev/kept") != "true" or owner != "NeedsAttention":
            await gone(line, line.pods, pod["metadata"]["name"])
    for secret in await line.items(line.secrets):
        if (name := secret["metadata"]["name"]) not in ("anthropic", "gh-app"):
            await gone(line, line.secrets, name)
    if not killed:  # each task's last Event follows its last status write: await it
        for name, obj in tasks.items():
            last = obj["status"]["history"][-1]["reason"]
            await wait_for(line.api, line.events, "", lambda _: True, within=60,
                           field=f"involvedObject.name={name},reason={last}")  # fmt: skip
    events = collections.defaultdict(list)
    for event in await line.items(line.events):
        if event["involvedObject"].get("kind") == "AgentTask":
            events[event["involvedObject"]["name"]].append(event["reason"])
    for name, obj in tasks.items():
        moves = [h["reason"] for h in obj["status"]["history"]]
        told = collections.Counter(r for r in events[name] if r != "StageStuck")  # not a move
        missing, extra = collections.Counter(moves) - told, told - collections.Counter(moves)
        assert not extra, f"an Event without its transition: {name}: {extra}"
        assert sum(missing.values()) <= (1 if killed else 0), f"Events missing: {name}: {missing}"
    return tasks


async def gone(line: Line, collection: str, name: str) -> None:
    """Wait until the operator has removed *name*; fail saying it was left behind."""
    try:
        await wait_gone(line.api, collection, name)
    except TimeoutError:
        raise AssertionError(f"{name} left behind") from None
