"""Faults the operator must survive without losing or doubling anything: the API server
refusing or failing status writes, watch streams cut, agent pods evicted, OOM-killed or
handing back garbage, and the operator killed at each stage boundary. Stage pods finish at
once with scripted results (`tests/instant.py`), so each test is quick and deterministic.

After every fault, every task ends Merged (or NeedsAttention with its reason), merged once,
each stage attempt's pod created once, and no pod or per-pod Secret is left behind.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import kmock
import pytest

from agentfactory import API_VERSION
from tests.cluster import merged_tasks, operator_process
from tests.fakes.github_api import FakeGitHub, Fault
from tests.githubs import ALL, REPO
from tests.gitutil import bare_remote
from tests.instant import (
    EVICTED,
    HOLD,
    MALFORMED,
    NO_ROOM,
    OOM_KILLED,
    UNSCHEDULABLE,
    End,
    InstantKubelet,
    factory,
    happy,
    succeed,
    task,
)
from tests.kube import emulated, running_operator, secret_doc, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

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


def is_status_patch(request: Any) -> bool:
    resource = request.resource
    on_tasks = resource is not None and resource.plural == "agenttasks"
    return bool(request.method.value == "PATCH" and on_tasks and request.subresource == "status")


async def test_status_writes_refused_with_409_or_failing_with_500_are_decided_again(
    tmp_path: Path,
) -> None:
    # Of the first 24 status writes, every third fails with a 500 and every fourth with a
    # 409 Conflict (someone else wrote first); the operator must re-read and decide again,
    # never skip a transition or apply one twice.
    writes = itertools.count(1)
    injected: list[int] = []

    def flaky(request: Any) -> Exception | None:
        if not is_status_patch(request):
            return None
        n = next(writes)
        if n > 24:
            return None
        if n % 3 == 0:
            injected.append(500)
            return kmock.KubernetesError(status=500, reason="InternalError", message="etcd hiccup")
        if n % 4 == 0:
            injected.append(409)
            return kmock.KubernetesError(status=409, reason="Conflict",
                                         message="the object has been modified")  # fmt: skip
        return None

    async with line(tmp_path) as ln:
        ln.emulator.faults.append(flaky)
        tasks = await assert_nothing_lost_or_doubled(ln)
    assert injected.count(500) == 8 and injected.count(409) == 4
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())


async def test_watch_streams_cut_again_and_again_lose_no_event(tmp_path: Path) -> None:
    # Every 25th request cuts every open watch (the operator's and the kubelet's).
    served = itertools.count(1)
    cuts: list[int] = []

    def cutter(request: Any) -> Exception | None:
        if next(served) % 25 == 0:
            cuts.append(ln.emulator.drop_watches())
        return None

    async with line(tmp_path) as ln:
        ln.emulator.faults.append(cutter)
        tasks = await assert_nothing_lost_or_doubled(ln)
    assert len(cuts) >= 10 and sum(cuts) >= 20, cuts
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())


def broken_first_attempts(stage: str, task: str, attempt: int) -> End | None:
    """alpha's plan hands back a malformed result, beta's implement pod is evicted and
    gamma's CI pod is OOM-killed, each on its first attempt."""
    faults = {("alpha", "plan"): MALFORMED, ("beta", "implement"): EVICTED,
              ("gamma", "ci"): OOM_KILLED}  # fmt: skip
    if attempt == 1 and (task, stage) in faults:
        return faults[task, stage]
    return succeed(stage, task)


async def test_evicted_oom_killed_and_garbled_pods_are_failed_attempts_that_are_retried(
    tmp_path: Path,
) -> None:
    async with line(tmp_path, broken_first_attempts) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
    expected = {"alpha": ("plan", "result"), "beta": ("implement", "evicted"),
                "gamma": ("ci", "out of memory")}  # fmt: skip
    for name, (stage, words) in expected.items():
        status = tasks[name]["status"]
        assert status["phase"] == "Merged", status.get("message")
        retried = [h for h in status["history"] if h["reason"] == "StageRetried"]
        assert len(retried) == 1 and words in retried[0]["message"].lower(), retried
        assert f"{name}-{stage}-2" in ln.kubelet.started


def always_evicted(stage: str, task: str, attempt: int) -> End | None:
    return EVICTED if (task, stage) == ("gamma", "implement") else succeed(stage, task)


async def test_a_pod_evicted_on_every_attempt_ends_in_needs_attention_with_the_reason(
    tmp_path: Path,
) -> None:
    async with line(tmp_path, always_evicted) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
        (kept,) = await ln.items(PODS)
    assert kept["metadata"]["name"] == "gamma-implement-3", "the last failed pod, for debugging"
    gamma = tasks["gamma"]["status"]
    assert gamma["phase"] == "NeedsAttention" and gamma["reason"] == "RetriesExhausted"
    assert "evicted" in gamma["message"].lower()
    assert [p for p in ln.kubelet.started if p.startswith("gamma-implement")] == [
        "gamma-implement-1", "gamma-implement-2", "gamma-implement-3"]  # fmt: skip
    assert tasks["alpha"]["status"]["phase"] == tasks["beta"]["status"]["phase"] == "Merged"


def unschedulable_once(stage: str, task: str, attempt: int) -> End | None:
    if (task, stage, attempt) == ("gamma", "implement", 1):
        return UNSCHEDULABLE
    return succeed(stage, task)


async def test_a_pod_the_scheduler_cannot_place_fails_its_attempt_with_the_schedulers_words(
    tmp_path: Path,
) -> None:
    # The kubelet never sees an unscheduled pod, so its deadline never fires: the operator
    # stops it after --unschedulable-seconds (1 here) and tries again.
    async with line(tmp_path, unschedulable_once, unschedulable_seconds=1) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
    gamma = tasks["gamma"]["status"]
    assert gamma["phase"] == "Merged", gamma.get("message")
    (retried,) = [h for h in gamma["history"] if h["reason"] == "StageRetried"]
    assert retried["message"].endswith(f"not scheduled within 1s: {NO_ROOM}"), retried
    assert "gamma-implement-2" in ln.kubelet.started


BAD_GATEWAY = Fault((502, {"message": "Server Error"}, {}))


async def test_github_failing_and_rate_limiting_through_a_run_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    # On the fake GitHub: every 7th API call fails with a 502 (PyGithub tries again); the
    # first PR is created but its answer is lost (the retry finds it exists); the first merge
    # fails six times in a row, past PyGithub's retries; one primary and one secondary rate
    # limit (429 with Retry-After) are waited out.
    calls, seen = itertools.count(1), collections.Counter[str]()

    def chaos(method: str, path: str) -> Fault | None:
        n = next(calls)
        route = method + " " + ("merge" if path.endswith("/merge") else path.rsplit("/", 1)[-1])
        seen[route] += 1
        if route == "POST pulls" and seen[route] == 1:
            return Fault(BAD_GATEWAY.reply, after=True)
        if route == "PUT merge" and seen[route] <= 6:
            return BAD_GATEWAY
        if n == 12:
            reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)}
            return Fault((403, {"message": "API rate limit exceeded"}, reset))
        if n == 30:
            return Fault((429, {"message": "secondary rate limit"}, {"Retry-After": "1"}))
        return BAD_GATEWAY if n % 7 == 0 else None

    with FakeGitHub(root=tmp_path / "github", chaos=[chaos]) as github:
        async with line(tmp_path, github=github) as ln:
            tasks = await assert_nothing_lost_or_doubled(ln)
            stuck = [e["message"] for e in await ln.items(EVENTS) if e["reason"] == "StageStuck"]
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())
    pulls = list(github.pulls[REPO].values())
    assert sorted(p["head"] for p in pulls) == [f"factory/{n}" for n in sorted(NAMES)], "one each"
    assert all(p["merged"] for p in pulls)
    assert seen["POST pulls"] >= 4 and seen["PUT merge"] >= 6 + 3, seen
    # The merge that outlasted the retries is said, as a stage that cannot advance yet; the
    # lost answer is not (the PR was found).
    assert any(m.startswith("merge #1 cannot advance: merging factory/") and "502" in m
               for m in stuck), stuck  # fmt: skip
    assert not any("pull request" in m for m in stuck), stuck
    assert next(calls) > 60, "the faults were spread over a whole run"


# -- the operator killed at each stage boundary ------------------------------------------------


#: The flags of the operator processes these tests kill and start again.
RUN = ("--standalone", "--metrics-port", "0", "--resync-seconds", "1", "--namespace", NS)


@pytest.mark.parametrize("stage", ["plan", "plan-review", "implement", "ci", "code-review"])
async def test_an_operator_killed_while_a_stage_ends_resumes_without_doubling(
    tmp_path: Path, stage: str
) -> None:
    # alpha's pod of *stage* is held; the operator is SIGKILLed; the pod then finishes (its
    # result waits in the API with no operator alive); a new operator takes over.
    def hold(pod_stage: str, name: str, attempt: int) -> End | None:
        if (name, pod_stage, attempt) == ("alpha", stage, 1):
            return HOLD
        return succeed(pod_stage, name)

    log = tmp_path / "operator.log"
    async with line(tmp_path, hold, operator=False) as ln:
        async with operator_process(ln.url, ln.workdir, log, *RUN) as first:
            await wait_for(ln.url, PODS, f"alpha-{stage}-1", lambda _: True, within=60)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        await ln.kubelet.release(f"alpha-{stage}-1")
        async with operator_process(ln.url, ln.workdir, log, *RUN):
            tasks = await assert_nothing_lost_or_doubled(ln, killed=True)
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values()), log.read_text()[-3000:]
    assert f"alpha-{stage}-2" not in ln.kubelet.started, "the held attempt's result was used"


async def test_an_operator_killed_while_merging_merges_once(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    async with line(tmp_path, operator=False) as ln:
        async with operator_process(ln.url, ln.workdir, log, *RUN) as first:
            await wait_for(ln.url, TASKS, "alpha",
                           lambda o: (o.get("status") or {}).get("phase") == "Merging",
                           within=60)  # fmt: skip
            first.send_signal(signal.SIGKILL)
            await first.wait()
        async with operator_process(ln.url, ln.workdir, log, *RUN):
            tasks = await assert_nothing_lost_or_doubled(ln, killed=True)
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values()), log.read_text()[-3000:]
