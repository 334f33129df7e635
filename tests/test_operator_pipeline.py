"""The operator end to end: kopf for real against the emulator, the test kubelet running every
stage pod in bubblewrap with the real agent runner, the real anthropic SDK against the fake
Messages API, and a bare git repository as the remote. Resources go in as `kubectl apply`
would send them; the tests watch phases, pods, Events and the remote."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from tests.fakes.anthropic_api import API_KEY, FakeAnthropic, tool
from tests.gitutil import git
from tests.kube import Emulator, emulated, running_operator, wait_for
from tests.kubelet import Kubelet
from tests.scripts import (
    CART,
    CART_FIXED,
    CHECK,
    Router,
    factory_doc,
    implement,
    replace,
    task_doc,
    verdict,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import pytest

    from tests.fakes.anthropic_api import Reply

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

    async def start_operator(self) -> None:
        self.operator = contextlib.AsyncExitStack()
        await self.operator.enter_async_context(
            running_operator(self.url, workdir=str(self.workdir), resync_seconds=2)
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
    sessions: dict[tuple[str, str], list[list[Reply]]], *, in_process: bool = True, **spec: Any,
) -> AsyncIterator[Cluster]:  # fmt: skip
    """The emulator, the kubelet, the fake API and the resources; with *in_process* the
    operator too (otherwise the test runs `agentfactory run` processes: `operator_process`)."""
    goals = {t["spec"]["goal"]: t["metadata"]["name"] for t in tasks}
    with FakeAnthropic([Router(goals, sessions)], repeat_last=True) as fake:
        async with emulated() as (emulator, url), aiohttp.ClientSession() as http:
            kubelet = Kubelet(url, emulator, tmp_path / "kubelet", readable=[str(remote)])
            running = asyncio.create_task(kubelet.run())
            c = Cluster(url, http, kubelet, emulator, remote, tmp_path / "operator",
                        contextlib.AsyncExitStack())  # fmt: skip
            try:
                if in_process:
                    await c.start_operator()
                await c.create(SECRETS, {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "anthropic"},
                                         "data": {"api-key": base64.b64encode(
                                             API_KEY.encode()).decode()}})  # fmt: skip
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


def operator_requests(emulator: Emulator) -> collections.Counter[str]:
    """The operator's own API requests by verb and resource (its client's User-Agent)."""
    return collections.Counter(
        f"{r.method.value} {r.resource.plural}{'/' + r.subresource if r.subresource else ''}"
        for r in emulator
        if r.resource is not None and r.headers.get("User-Agent", "").startswith("agentfactory/")
    )


def merged_tasks(remote: Path) -> list[str]:
    log = git(remote, "log", "--format=%B", "main")
    return [line.split(": ")[1] for line in log.splitlines()
            if line.startswith("Agentfactory-Task: ")]  # fmt: skip


async def test_the_happy_path_runs_each_stage_in_its_own_pod_and_merges(
    tmp_path: Path, remote: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with cluster(tmp_path, remote, [FIX_CART], fixes()) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE
        assert merged_tasks(remote) == ["fix-cart"]
        assert CART_FIXED in git(remote, "show", "main:shop/cart.py")
        # Every pod read was deleted with its credentials; nothing failed, so nothing is kept.
        assert await c.items(PODS) == []
        assert [s["metadata"]["name"] for s in await c.items(SECRETS)] == ["anthropic"]
        events = [e for e in await c.items(EVENTS)
                  if e["involvedObject"]["name"] == "fix-cart"]  # fmt: skip
        reasons = [e["reason"] for e in sorted(events, key=lambda e: e["metadata"]["name"])]
        assert reasons[:3] == ["DependenciesReady", "Admitted", "PlanProduced"]
        assert reasons[-1] == "Merged"
        history = task["status"]["history"]
        assert [h["to"] for h in history][-1] == "Merged"
        assert len(events) == len(history), "one Event per transition"
        for text in (json.dumps(events), json.dumps(task), caplog.text):
            assert API_KEY not in text, "the API key never leaves its Secret"
        # The operator's own API requests (kopf's are its watches and the factory handler's).
        ours = operator_requests(c.emulator)
        transitions, pods = len(history), len(c.kubelet.started)
        assert ours["PATCH agenttasks/status"] == ours["POST events"] == transitions
        assert ours["PATCH factoryspecs/status"] <= transitions, "counts move with transitions"
        for kind in ("POST pods", "POST configmaps", "POST secrets", "GET pods/log",
                     "DELETE secrets", "DELETE pods"):  # fmt: skip
            assert ours[kind] == pods, kind
        assert sum(ours.values()) <= 3 * transitions + 7 * pods + 12, ours


MIGRATION = task_doc("orders", "Orders are stored.", ["migrations/**", "shop/db.py"])
ADD_MIGRATION = implement(tool("write_file", path="migrations/0002.sql",
                               content="CREATE TABLE orders (id INTEGER);\n"))  # fmt: skip
IMPORTS = [{"name": "imports", "command": "python3 -c 'import shop.pricing'"}]


async def test_an_escalation_waits_for_the_approval_annotation_which_is_consumed_once(
    tmp_path: Path, remote: Path
) -> None:
    sessions = {("orders", "implementer"): [ADD_MIGRATION]}
    async with cluster(tmp_path, remote, [MIGRATION], sessions, checks=IMPORTS) as c:
        waiting = await c.phase("orders", "AwaitingApproval", "NeedsAttention", "Merged")
        assert waiting["status"]["phase"] == "AwaitingApproval"
        assert "agentfactory.dev/approved-by" in waiting["status"]["message"]
        assert merged_tasks(remote) == []
        await c.annotate("orders", "agentfactory.dev/approved-by", "alice")
        done = await c.phase("orders", "Merged", "NeedsAttention")
        assert done["status"]["phase"] == "Merged"
        assert done["status"]["escalation"]["approvedBy"] == "alice"
        assert "agentfactory.dev/approved-by" not in (done["metadata"].get("annotations") or {})
        assert merged_tasks(remote) == ["orders"]
        # Approving again is an action on a task that waits for nothing: reported, not applied.
        await c.annotate("orders", "agentfactory.dev/approved-by", "bob")
        task = await wait_for(c.url, TASKS, "orders", lambda o: "agentfactory.dev/approved-by"
                              not in (o["metadata"].get("annotations") or {}))  # fmt: skip
        assert task["status"]["phase"] == "Merged"
        reasons = [e["reason"] for e in await c.items(EVENTS)]
        assert reasons.count("HumanApproved") == 1 and "HumanActionIgnored" in reasons


async def test_reviews_that_keep_asking_for_changes_exhaust_the_retries(
    tmp_path: Path, remote: Path
) -> None:
    no = verdict("REQUEST_CHANGES", "The plan misses the tests.")
    sessions = {("fix-cart", "plan-reviewer"): [no, no]}
    async with cluster(tmp_path, remote, [FIX_CART], sessions, retries={"perStage": 1}) as c:
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert task["status"]["phase"] == "NeedsAttention"
        assert c.started == [
            "fix-cart-plan-1", "fix-cart-plan-review-1", "fix-cart-plan-2",
            "fix-cart-plan-review-2"]  # fmt: skip
        assert "The plan misses the tests." in json.dumps(task["status"])
        assert merged_tasks(remote) == []


SLOW_CI = [{"name": "test", "command": f"sleep 600; {CHECK}", "timeoutSeconds": 900}]


async def test_a_pod_deleted_mid_stage_is_a_failed_attempt_not_a_silent_rerun(
    tmp_path: Path, remote: Path
) -> None:
    async with cluster(tmp_path, remote, [FIX_CART], fixes(), checks=SLOW_CI,
                       retries={"perStage": 0}) as c:  # fmt: skip
        # The implementer runs the checks before it hands off: its pod is the slow one.
        await c.pod("fix-cart-implement-1")
        response = await c.http.delete(f"{c.url}{PODS}/fix-cart-implement-1")
        assert response.status == 200
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert "fix-cart-implement-1 was deleted before it finished" in task["status"]["message"]
        assert [s["metadata"]["name"] for s in await c.items(SECRETS)] == ["anthropic"]


async def test_a_pod_past_its_deadline_fails_its_attempt_and_is_kept_for_debugging(
    tmp_path: Path, remote: Path
) -> None:
    async with cluster(tmp_path, remote, [FIX_CART], fixes(), checks=SLOW_CI,
                       retries={"perStage": 0}, sandbox={"timeoutSeconds": 60}) as c:  # fmt: skip
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert "stopped at its deadline" in task["status"]["message"]
        kept = await c.items(PODS)
        assert [p["metadata"]["name"] for p in kept] == ["fix-cart-implement-1"]
        assert kept[0]["status"]["reason"] == "DeadlineExceeded"
        assert kept[0]["metadata"]["labels"]["agentfactory.dev/kept"] == "true"
        # Its credentials go even though the pod stays.
        assert [s["metadata"]["name"] for s in await c.items(SECRETS)] == ["anthropic"]


async def test_an_invalid_task_gets_failed_with_the_field_and_the_fix(
    tmp_path: Path, remote: Path
) -> None:
    bad = task_doc("vague", "Make it better.", ["shop/**"])
    bad["spec"]["acceptanceCriteria"] = []
    async with cluster(tmp_path, remote, [bad, FIX_CART],
                       fixes()) as c:  # fmt: skip
        task = await c.phase("vague", "Failed")
        assert "spec.acceptanceCriteria" in task["status"]["message"]
        assert (await c.phase("fix-cart", "Merged", "NeedsAttention"))["status"]["phase"] == (
            "Merged"
        ), "one bad task stops nothing else"


@asynccontextmanager
async def operator_process(
    c: Cluster, log: Path, *flags: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`agentfactory run` against the emulator, as a process of its own (logs to *log*)."""
    argv = [sys.executable, "-m", "agentfactory", "run", "--server", c.url,
            "--workdir", str(c.workdir), "--liveness-port", "0", "--resync-seconds", "2",
            *flags]  # fmt: skip
    with log.open("a") as out:
        process = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def log_records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_an_operator_killed_mid_stage_resumes_without_a_second_pod_or_merge(
    tmp_path: Path, remote: Path
) -> None:
    # `agentfactory run` killed with SIGKILL while the CI pod runs; a new process rebuilds its
    # view from the resources and finishes the task.
    log, port = tmp_path / "operator.log", free_port()
    flags = ("--standalone", "--metrics-port", str(port))
    async with cluster(tmp_path, remote, [FIX_CART], fixes(), checks=CI_A_WHILE,
                       in_process=False) as c:  # fmt: skip
        async with operator_process(c, log, *flags) as first:
            await c.pod("fix-cart-ci-1")
            first.kill()
            await first.wait()
        async with operator_process(c, log, *flags) as second:
            task = await c.phase("fix-cart", "Merged", "NeedsAttention")
            async with c.http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
            second.terminate()
            assert await second.wait() == 0, "SIGTERM stops the operator cleanly"
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE, "no pod twice"
        assert merged_tasks(remote) == ["fix-cart"], "merged once"
        assert git(remote, "branch", "--list", "factory/*") == "", "no branch left behind"
        assert 'agentfactory_tasks{factory="shop",namespace="shop",phase="Merged"} 1.0' in metrics
        assert all({"message", "timestamp", "severity"} <= r.keys() for r in log_records(log)), (
            "structured logs: one JSON object per line"
        )


async def test_of_two_peered_replicas_one_acts_and_the_other_takes_over_when_it_dies(
    tmp_path: Path, remote: Path
) -> None:
    leader, standby = tmp_path / "leader.log", tmp_path / "standby.log"
    peering = ("--peering-lifetime", "4", "--metrics-port", "0")
    async with cluster(tmp_path, remote, [FIX_CART], fixes(), checks=CI_A_WHILE,
                       in_process=False) as c:  # fmt: skip
        async with operator_process(c, leader, "--priority", "2", *peering) as first:
            await wait_for(c.url, "/apis/kopf.dev/v1/clusterkopfpeerings", "agentfactory",
                           lambda o: bool(o.get("status")))  # fmt: skip
            async with operator_process(c, standby, "--priority", "1", *peering) as second:
                await c.pod("fix-cart-ci-1")
                first.kill()
                task = await c.phase("fix-cart", "Merged", "NeedsAttention")
                second.terminate()
                assert await second.wait() == 0, "SIGTERM stops the operator cleanly"
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE, "no pod twice"
        assert merged_tasks(remote) == ["fix-cart"], "merged once"
        led, took_over = moves(leader), moves(standby)
        assert "launched fix-cart-ci-1" in led, "the higher priority leads"
        assert took_over, "the standby finished the task"
        early = ("launched fix-cart-plan", "launched fix-cart-implement", "launched fix-cart-ci")
        assert not any(m.startswith(early) for m in took_over), "idle while the leader lived"
        assert took_over[-1].startswith("Merging -> Merged")
        assert len(led + took_over) == len(set(led + took_over)), "nothing done twice"
        transitions = [m for m in led + took_over if " -> " in m]
        assert len(transitions) == len(task["status"]["history"])


def moves(log: Path) -> list[str]:
    """What the operator logged doing to shop/fix-cart: launches and transitions."""
    prefix = "shop/fix-cart "
    return [r["message"].removeprefix(prefix) for r in log_records(log)
            if r["message"].startswith(prefix)]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
