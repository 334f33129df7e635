"""A small assembly line on the instant kubelet (`tests/instant.py`), for the fault and
bad-input tests: the emulator, a factory on a bare remote (or on a fake GitHub) with three
tasks (beta depends on alpha), and the check that after whatever happened nothing was lost
or doubled."""

from __future__ import annotations

import asyncio
import collections
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from agentfactory import API_VERSION
from tests.cluster import merged_tasks
from tests.githubs import ALL, REPO
from tests.gitutil import bare_remote
from tests.instant import End, InstantKubelet, factory, happy, task
from tests.kube import emulated, running_operator, secret_doc, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tests.fakes.github_api import FakeGitHub
    from tests.kube import Emulator

NS = "line"
TASKS = f"/apis/{API_VERSION}/namespaces/{NS}/agenttasks"
PODS = f"/api/v1/namespaces/{NS}/pods"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
EVENTS = f"/api/v1/namespaces/{NS}/events"
NAMES = ["alpha", "beta", "gamma"]  # beta depends on alpha
ENDED = ("Merged", "NeedsAttention", "Failed", "Cancelled")


@dataclass
class Line:
    url: str
    http: aiohttp.ClientSession
    emulator: Emulator
    kubelet: InstantKubelet
    remote: Path
    workdir: Path

    async def tasks(self) -> dict[str, dict[str, Any]]:
        async with self.http.get(f"{self.url}{TASKS}") as answer:
            return {t["metadata"]["name"]: t for t in (await answer.json())["items"]}

    async def items(self, collection: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}{collection}") as answer:
            return list((await answer.json())["items"])

    async def ended(self, name: str, within: float = 120) -> dict[str, Any]:
        def done(obj: dict[str, Any]) -> bool:
            return (obj.get("status") or {}).get("phase") in ENDED

        return await wait_for(self.url, TASKS, name, done, within=within)

    async def all_ended(self, within: float = 120) -> dict[str, dict[str, Any]]:
        for name in NAMES:
            await self.ended(name, within)
        return await self.tasks()


@asynccontextmanager
async def line(
    tmp_path: Path, script: Callable[[str, str, int], End | None] = happy,
    *, operator: bool = True, github: FakeGitHub | None = None, **settings: float,
) -> AsyncIterator[Line]:  # fmt: skip
    """The emulator, the instant kubelet, a factory on a bare remote (or on *github*, with an
    App installation) and three tasks; with *operator*, kopf in this process with *settings*
    (otherwise the test runs `agentfactory run`)."""
    async with emulated() as (emulator, url), aiohttp.ClientSession() as http:
        kubelet = InstantKubelet(url, emulator, http, script)
        watching = asyncio.create_task(kubelet.run())
        remote = bare_remote(tmp_path)
        on: dict[str, Any] = {}
        created = [secret_doc("anthropic", {"api-key": "unused"})]
        if github is not None:
            remote = github.create_repository(REPO, remote)
            github.install(7, REPO, **ALL)
            app = {"githubApp": {"secretName": "gh-app"}}
            on = {"repository": {"url": github.clone_url(REPO), "forge": "github",
                                 "credentials": app}}  # fmt: skip
            created.append(secret_doc("gh-app", github.app_secret(7)))
        created += [factory("line", remote, concurrency={"maxActiveTasks": 3}, **on),
                    task("alpha", "line", []), task("beta", "line", ["alpha"]),
                    task("gamma", "line", [])]  # fmt: skip
        paths = [SECRETS] * (len(created) - 4) + [
            f"/apis/{API_VERSION}/namespaces/{NS}/factoryspecs", TASKS, TASKS, TASKS]  # fmt: skip
        for path, doc in zip(paths, created, strict=True):
            doc["metadata"]["namespace"] = NS
            async with http.post(f"{url}{path}", json=doc) as answer:
                assert answer.status in (200, 201), await answer.text()
        stack = AsyncExitStack()
        if operator:
            await stack.enter_async_context(running_operator(
                url, workdir=str(tmp_path / "operator"), resync_seconds=1,
                **settings))  # fmt: skip
        try:
            async with stack:
                yield Line(url, http, emulator, kubelet, remote, tmp_path / "operator")
        finally:
            watching.cancel()


async def assert_nothing_lost_or_doubled(
    line: Line, *, killed: bool = False
) -> dict[str, dict[str, Any]]:
    """Every task ended Merged, or NeedsAttention with its reason; each merged once; each
    pod created once; no pod or per-pod Secret left; one Event per transition. (When the
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
        r.data["metadata"]["name"] for r in line.emulator.log
        if r.method.value == "POST" and r.resource is not None and r.resource.plural == "pods"
    )  # fmt: skip
    assert all(count == 1 for count in posts.values()), f"a pod created twice: {posts}"
    assert sorted(posts) == sorted(line.kubelet.started)
    # A task that needs attention keeps its last failed pod for debugging (credentials gone);
    # nothing else is left.
    for pod in await line.items(PODS):
        labels = pod["metadata"]["labels"]
        owner = tasks[labels["agentfactory.dev/task"]]["status"]["phase"]
        assert labels.get("agentfactory.dev/kept") == "true" and owner == "NeedsAttention", (
            f"{pod['metadata']['name']} left behind"
        )
    secrets = [s["metadata"]["name"] for s in await line.items(SECRETS)]
    assert set(secrets) <= {"anthropic", "gh-app"}, "no per-pod Secret left"
    events = collections.defaultdict(list)
    for event in await line.items(EVENTS):
        if event["involvedObject"].get("kind") == "AgentTask":
            events[event["involvedObject"]["name"]].append(event["reason"])
    for name, obj in tasks.items():
        moves = [h["reason"] for h in obj["status"]["history"]]
        told = collections.Counter(r for r in events[name] if r != "StageStuck")  # not a move
        missing, extra = collections.Counter(moves) - told, told - collections.Counter(moves)
        assert not extra, f"an Event without its transition: {name}: {extra}"
        assert sum(missing.values()) <= (1 if killed else 0), f"Events missing: {name}: {missing}"
    return tasks
