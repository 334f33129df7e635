"""The operator end to end: kopf for real against the real API server with the chart's RBAC,
the test kubelet running every stage pod in bubblewrap with the real agent runner, the real
anthropic SDK against the fake Messages API, and a bare git repository as the remote.
Resources go in as `kubectl apply` would send them; the tests watch phases, pods, Events and
the remote."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import aiohttp.web
import pytest
from testbed.apiserver import free_port
from testbed.cluster import (
    CI_A_WHILE,
    EVERY_STAGE,
    FIX,
    FIX_CART,
    cluster,
    fixes,
    merged_tasks,
    operator_process,
)
from testbed.fakes.anthropic_api import API_KEY, Fail, tool
from testbed.gitutil import git
from testbed.kube import secret_doc, wait_for, wait_gone
from testbed.scripts import (
    CART_FIXED,
    CHECK,
    implement,
    replace,
    task_doc,
    verdict,
)

from agentfactory.controller.credentials import SECRET_SECONDS
from agentfactory.core.heartbeat import Heartbeat

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from testbed.apiserver import ControlPlane


async def test_the_happy_path_runs_each_stage_in_its_own_pod_and_merges(
    control_plane: ControlPlane, tmp_path: Path, remote: Path, caplog: pytest.LogCaptureFixture
) -> None:
    began = time.monotonic()
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes()) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        took = time.monotonic() - began
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE
        assert task["status"]["observedGeneration"] == task["metadata"]["generation"]
        assert merged_tasks(remote) == ["fix-cart"]
        assert CART_FIXED in git(remote, "show", "main:shop/cart.py")
        # Every pod read was deleted, and its Secret with it (by the garbage collector, as its
        # owner); nothing failed, so nothing is kept.
        assert await c.items(c.pods) == []
        for secret in await c.items(c.secrets):
            if (name := secret["metadata"]["name"]) != "anthropic":
                await wait_gone(c.api, c.secrets, name)
        events = [e for e in await c.items(c.events)
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
        ours = c.requests()
        transitions, pods = len(history), len(c.kubelet.started)
        assert ours["PATCH agenttasks/status"] == ours["POST events"] == transitions
        assert ours["PATCH factoryspecs/status"] <= transitions, "counts move with transitions"
        # A stage pod's whole life is four requests: its pod and its Secret made, its log
        # read, its pod deleted. Whether it runs, and whether it was launched, the watch says.
        for kind in ("POST pods", "POST secrets", "GET pods/log", "DELETE pods"):
            assert ours[kind] == pods, kind
        for kind in ("PATCH pods", "DELETE secrets", "GET configmaps", "POST configmaps"):
            assert ours[kind] == 0, kind
        assert ours["GET pods"] == 1, "one listing, as the worker starts; no read per pod"
        # The key Secret and the factory's NetworkPolicy are read by the factory's handler,
        # and before a pod starts (may the factory use the key? are its pods confined?), then
        # cached for SECRET_SECONDS: not once per pod.
        windows = 1 + int(took // SECRET_SECONDS)
        assert ours["GET secrets"] <= 1 + windows, "the model key's Secret is not read per pod"
        assert ours["GET networkpolicies"] <= 1 + windows, "nor the NetworkPolicy"
        assert sum(ours.values()) <= 3 * transitions + 4 * pods + 13 + 2 * windows, ours
        # Everything it asked for (kopf included), the chart's RBAC allowed.
        assert c.refused() == []
        assert c.requests()["GET pods/log"] == pods
        # `kubectl logs -f <pod> -c agent` shows the agent at work: a heartbeat per turn.
        log = c.kubelet.logs[c.ns, "fix-cart-implement-1", "agent"]
        beats = [b for line in log.splitlines() if (b := Heartbeat.parse(line)) is not None]
        assert [b.turn for b in beats] == list(range(1, len(beats) + 1)) and len(beats) >= 2
        assert beats[-1].tools == ("submit_implementation",), beats


MIGRATION = task_doc("orders", "Orders are stored.", ["migrations/**", "shop/db.py"])
ADD_MIGRATION = implement(tool("write_file", path="migrations/0002.sql",
                               content="CREATE TABLE orders (id INTEGER);\n"))  # fmt: skip
IMPORTS = [{"name": "imports", "command": "python3 -c 'import shop.pricing'"}]


async def test_an_escalation_waits_for_the_approval_annotation_which_is_consumed_once(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    sessions = {("orders", "implementer"): [ADD_MIGRATION]}
    async with cluster(control_plane, tmp_path, remote, [MIGRATION], sessions, checks=IMPORTS) as c:
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
        task = await wait_for(c.api, c.tasks, "orders", lambda o: "agentfactory.dev/approved-by"
                              not in (o["metadata"].get("annotations") or {}))  # fmt: skip
        assert task["status"]["phase"] == "Merged"
        # The Event follows the annotation's removal: await it rather than race it.
        ignored = await wait_for(c.api, c.events, "", lambda o: o.get("reason") == (
            "HumanActionIgnored"), field="reason=HumanActionIgnored")  # fmt: skip
        assert ignored["involvedObject"]["name"] == "orders"
        reasons = [e["reason"] for e in await c.items(c.events)]
        assert reasons.count("HumanApproved") == 1


async def test_reviews_that_keep_asking_for_changes_exhaust_the_retries(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    no = verdict("REQUEST_CHANGES", "The plan misses the tests.")
    sessions = {("fix-cart", "plan-reviewer"): [no, no]}
    async with cluster(
        control_plane, tmp_path, remote, [FIX_CART], sessions, retries={"perStage": 1}
    ) as c:
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert task["status"]["phase"] == "NeedsAttention"
        assert c.started == [
            "fix-cart-plan-1", "fix-cart-plan-review-1", "fix-cart-plan-2",
            "fix-cart-plan-review-2"]  # fmt: skip
        assert "The plan misses the tests." in json.dumps(task["status"])
        assert merged_tasks(remote) == []


SLOW_CI = [{"name": "test", "command": f"sleep 600; {CHECK}", "timeoutSeconds": 900}]


async def test_a_model_api_overloaded_or_rate_limited_for_a_while_costs_at_most_one_attempt(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The Messages API answers 529 (overloaded) to the planner's first call and the SDK's 4
    # retries; the attempt fails with the reason, the next attempt gets through. In the
    # implementer's session, two 429s (rate limited) between turns are waited out by the SDK:
    # no attempt is lost.
    (edit, submit) = FIX
    implementer = [edit, Fail(429, "rate limited"), Fail(429, "rate limited"), submit]
    sessions = {("fix-cart", "implementer"): [implementer],
                ("fix-cart", "planner"): [[Fail(529)]] * 5}  # fmt: skip
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], sessions) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == ["fix-cart-plan-1", "fix-cart-plan-2", *EVERY_STAGE[1:]]
        retried = [h for h in task["status"]["history"] if h["reason"] == "StageRetried"]
        assert len(retried) == 1 and "529" in retried[0]["message"], retried
        assert c.fake.statuses.count(429) == 2, "the SDK waited out the rate limit"
        assert merged_tasks(remote) == ["fix-cart"]
        assert [s["metadata"]["name"] for s in await c.items(c.secrets)] == ["anthropic"]


async def test_a_pod_deleted_mid_stage_is_a_failed_attempt_not_a_silent_rerun(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), checks=SLOW_CI,
                       retries={"perStage": 0}) as c:  # fmt: skip
        # The implementer runs the checks before it hands off: its pod is the slow one.
        await c.pod("fix-cart-implement-1")
        response = await c.http.delete(f"{c.url}{c.pods}/fix-cart-implement-1")
        assert response.status == 200
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert "fix-cart-implement-1 was deleted before it finished" in task["status"]["message"]
        for secret in await c.items(c.secrets):  # the pod's went with it
            if (name := secret["metadata"]["name"]) != "anthropic":
                await wait_gone(c.api, c.secrets, name)


async def test_a_deleted_task_takes_its_pods_and_their_secrets_with_it(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The operator is gone (uninstalled) and an admin clears its finalizer: the garbage
    # collector, following the owner references, removes what the task owned.
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), checks=SLOW_CI,
                       retries={"perStage": 0}) as c:  # fmt: skip
        running = await c.pod("fix-cart-implement-1")
        owned = [m["metadata"]["name"] for m in await c.items(c.secrets)
                 if m["metadata"].get("ownerReferences")]  # fmt: skip
        assert [name.rsplit("-", 1)[0] for name in owned] == ["fix-cart-implement-1"]
        await c.stop_operator()
        merge = {"Content-Type": "application/merge-patch+json"}
        cleared = {"metadata": {"finalizers": None}}
        task = f"{c.url}{c.tasks}/fix-cart"
        async with c.http.patch(task, json=cleared, headers=merge) as answer:
            assert answer.status == 200, await answer.text()
        async with c.http.delete(task) as answer:
            assert answer.status == 200, await answer.text()
        await wait_gone(c.api, c.pods, running["metadata"]["name"])
        for name in owned:
            await wait_gone(c.api, c.secrets, name)
        assert c.started[-1] == "fix-cart-implement-1"


async def test_a_pod_past_its_deadline_fails_its_attempt_and_is_kept_for_debugging(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), checks=SLOW_CI,
                       retries={"perStage": 0}, sandbox={"timeoutSeconds": 60}) as c:  # fmt: skip
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        assert "stopped at its deadline" in task["status"]["message"]
        kept = await c.items(c.pods)
        assert [p["metadata"]["name"] for p in kept] == ["fix-cart-implement-1"]
        assert kept[0]["status"]["reason"] == "DeadlineExceeded"
        assert kept[0]["metadata"]["labels"]["agentfactory.dev/kept"] == "true"
        # Its Secret (its credentials) goes even though the pod stays.
        for secret in await c.items(c.secrets):
            if (name := secret["metadata"]["name"]) != "anthropic":
                await wait_gone(c.api, c.secrets, name)
        assert (await c.items(c.pods))[0]["metadata"]["name"] == "fix-cart-implement-1"


async def test_an_invalid_task_gets_failed_with_the_field_and_the_fix(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # What the schema can say, the API server refuses at once, naming the field; what it
    # cannot (a blank criterion), the operator fails with the field and the fix.
    empty = task_doc("empty", "Make it better.", ["shop/**"], acceptanceCriteria=[])
    blank = task_doc("vague", "Make it better.", ["shop/**"], acceptanceCriteria=["  "])
    async with cluster(control_plane, tmp_path, remote, [blank, FIX_CART], fixes()) as c:
        async with c.http.post(c.url + c.tasks, json=empty) as refused:
            assert refused.status == 422
            assert "spec.acceptanceCriteria" in (await refused.json())["message"]
        task = await c.phase("vague", "Failed")
        assert "spec.acceptanceCriteria" in task["status"]["message"]
        assert "entry 0 is blank" in task["status"]["message"]
        assert (await c.phase("fix-cart", "Merged", "NeedsAttention"))["status"]["phase"] == (
            "Merged"
        ), "one bad task stops nothing else"


def log_records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def test_an_operator_killed_mid_stage_resumes_without_a_second_pod_or_merge(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # `agentfactory run` killed with SIGKILL while the CI pod runs; a new process rebuilds its
    # view from the resources and finishes the task.
    log, port = tmp_path / "operator.log", free_port()
    flags = ["--standalone", "--metrics-port", str(port), "--resync-seconds", "2"]
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), checks=CI_A_WHILE,
                       in_process=False) as c:  # fmt: skip
        flags += ["--namespace", c.ns]
        async with operator_process(c.kubeconfig, c.workdir, log, *flags) as first:
            await c.pod("fix-cart-ci-1")
            first.kill()
            await first.wait()
        async with operator_process(c.kubeconfig, c.workdir, log, *flags) as second:
            task = await c.phase("fix-cart", "Merged", "NeedsAttention")
            # The watch can deliver the write before the operator has read the server's answer
            # to it; the transition's Event is posted after, so once it exists the gauge holds.
            await wait_for(c.api, c.events, "", lambda e: True,
                           field="involvedObject.name=fix-cart,reason=Merged")  # fmt: skip
            async with c.http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
            second.terminate()
            assert await second.wait() == 0, "SIGTERM stops the operator cleanly"
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE, "no pod twice"
        assert merged_tasks(remote) == ["fix-cart"], "merged once"
        assert git(remote, "branch", "--list", "factory/*") == "", "no branch left behind"
        merged = f'agentfactory_tasks{{factory="shop",namespace="{c.ns}",phase="Merged"}} 1.0'
        assert merged in metrics
        assert all({"message", "timestamp", "severity"} <= r.keys() for r in log_records(log)), (
            "structured logs: one JSON object per line"
        )


async def test_of_two_peered_replicas_one_acts_and_the_other_takes_over_when_it_dies(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    leader, standby = tmp_path / "leader.log", tmp_path / "standby.log"
    peering = ("--peering-lifetime", "4", "--metrics-port", "0", "--resync-seconds", "2")
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), checks=CI_A_WHILE,
                       in_process=False, chart=("peering.enabled=true",)) as c:  # fmt: skip
        peering = (*peering, "--namespace", c.ns)
        leading = ("--priority", "2", *peering)
        async with operator_process(c.kubeconfig, c.workdir, leader, *leading) as first:
            peerings = f"/apis/kopf.dev/v1/namespaces/{c.ns}/kopfpeerings"
            await wait_for(c.api, peerings, "agentfactory", lambda o: bool(o.get("status")))
            async with operator_process(
                c.kubeconfig, c.workdir, standby, "--priority", "1", *peering
            ) as second:
                await c.pod("fix-cart-ci-1")
                first.kill()
                task = await c.phase("fix-cart", "Merged", "NeedsAttention")
                second.terminate()
                assert await second.wait() == 0, "SIGTERM stops the operator cleanly"
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        assert c.started == EVERY_STAGE, "no pod twice"
        assert merged_tasks(remote) == ["fix-cart"], "merged once"
        led, took_over = moves(leader, c.ns), moves(standby, c.ns)
        assert "launched fix-cart-ci-1" in led, "the higher priority leads"
        assert took_over, "the standby finished the task"
        early = ("launched fix-cart-plan", "launched fix-cart-implement", "launched fix-cart-ci")
        assert not any(m.startswith(early) for m in took_over), "idle while the leader lived"
        assert took_over[-1].startswith("Merging -> Merged")
        assert len(led + took_over) == len(set(led + took_over)), "nothing done twice"
        transitions = [m for m in led + took_over if " -> " in m]
        assert len(transitions) == len(task["status"]["history"])


def moves(log: Path, namespace: str) -> list[str]:
    """What the operator logged doing to fix-cart: launches and transitions."""
    prefix = f"{namespace}/fix-cart "
    return [r["message"].removeprefix(prefix) for r in log_records(log)
            if r["message"].startswith(prefix)]  # fmt: skip


def forged(name: str, stage: str, attempt: int, **extra: Any) -> dict[str, Any]:
    """An object under an attempt's name, with every label the operator's carry, made by
    someone who may create them in the namespace (a pod waits on a node that does not exist)."""
    labels = {"app.kubernetes.io/name": "agentfactory-agent",
              "app.kubernetes.io/managed-by": "agentfactory", "agentfactory.dev/task": "fix-cart",
              "agentfactory.dev/factory": "shop", "agentfactory.dev/stage": stage,
              "agentfactory.dev/attempt": str(attempt)}  # fmt: skip
    return {"apiVersion": "v1", "metadata": {"name": name, "labels": labels}, **extra}


FORGED_POD = forged("fix-cart-plan-1", "plan", 1, kind="Pod", spec={
    "nodeName": "nowhere", "restartPolicy": "Never",
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "agent", "image": "agentfactory/agent:latest",
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}}],
})  # fmt: skip


async def test_objects_someone_else_made_under_an_attempts_name_are_refused_not_used(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # Pod names are predictable: a user who may create pods makes the first planner pod before
    # the task exists. The inputs' Secret has a random part in its name, so inputs made under
    # the name they once had (a ConfigMap, as an older operator made them) are never mounted.
    inputs = forged("fix-cart-plan-2-input", "plan", 2, kind="ConfigMap",
                    data={"contract.json": "{}"})  # fmt: skip
    before = (("pods", FORGED_POD), ("configmaps", inputs))
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), before=before) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        retried = [h["message"] for h in task["status"]["history"] if h["reason"] == "StageRetried"]
        assert len(retried) == 1, retried
        assert "refused: Pod fix-cart-plan-1 was not made by the operator" in retried[0]
        assert c.started == ["fix-cart-plan-2", *EVERY_STAGE[1:]], "the forged pod was not read"
        events = [e["message"] for e in await c.items(c.events)
                  if e["reason"] == "ForeignObject"]  # fmt: skip
        assert len(events) == 1 and "no controller reference" in events[0], events
        plan = c.kubelet.mounted[c.ns, "fix-cart-plan-2", "input"]
        assert json.loads(plan["contract.json"])["task"] == "fix-cart", "its own contract"
        # Not the operator's to delete: the pod stays for whoever made it to answer for.
        assert (await c.get(f"{c.pods}/fix-cart-plan-1"))["metadata"]["name"]


async def test_a_model_key_secret_that_does_not_name_the_factory_is_never_mounted(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The factory names another team's key: no stage pod is made to mount it.
    theirs = secret_doc("team-b-key", {"api-key": API_KEY}, "team-b")
    agents = {"apiKeySecretRef": {"name": "team-b-key", "key": "api-key"}}
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(), agents=agents,
                       before=(("secrets", theirs),)) as c:  # fmt: skip
        said = "Secret 'team-b-key' does not let FactorySpec 'shop' use it"
        task = await wait_for(c.api, c.tasks, "fix-cart", lambda t: said in (
            t.get("status") or {}).get("message", ""))  # fmt: skip
        assert task["status"]["phase"] == "Planning"
        assert "kubectl label secret team-b-key agentfactory.dev/factory=shop" in task[
            "status"]["message"]  # fmt: skip
        assert await c.items(c.pods) == [] and c.kubelet.started == []


async def test_every_implementer_patch_is_kept_on_the_remote_until_the_task_is_deleted(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The first patch skips the test it should make pass and is rejected; the second lands.
    # Both stay fetchable, the rejected one included, and go when the task does.
    test = "    def test_quantity(self):"
    skip = replace("tests/test_cart.py", test, f"    @unittest.skip('later')  # SKIPPED\n{test}")
    sessions = {("fix-cart", "implementer"): [implement(skip), FIX]}
    task = task_doc("fix-cart", FIX_CART["spec"]["goal"], ["shop/cart.py", "tests/**"])
    async with cluster(control_plane, tmp_path, remote, [task], sessions) as c:
        task = await c.phase("fix-cart", "Merged", "NeedsAttention", "Failed")
        assert task["status"]["phase"] == "Merged", task["status"].get("message")
        kept = task["status"]["patches"]
        assert [(k["attempt"], k["accepted"]) for k in kept] == [(1, False), (2, True)]
        for k in kept:
            assert k["ref"] == f"refs/agentfactory/fix-cart/implement-{k['attempt']}"
            assert git(remote, "rev-parse", k["ref"]) == k["sha"]
        assert "# SKIPPED" in git(remote, "show", f"{kept[0]['ref']}:tests/test_cart.py")
        assert "patch rejected: adds a skip" in json.dumps(task["status"]["history"])
        assert kept[1]["sha"] == task["status"]["headSHA"]
        response = await c.http.delete(f"{c.url}{c.tasks}/fix-cart")
        assert response.status == 200
        await wait_for(c.api, c.events, "", lambda e: True,
                       field="involvedObject.name=fix-cart,reason=KeptPatchesRemoved")  # fmt: skip
        assert git(remote, "for-each-ref", "refs/agentfactory") == ""


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on loopback: its URL, and a queue of (headers, body) it got."""
    got: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await got.put((dict(request.headers), await request.read()))
        return aiohttp.web.Response(status=204)

    app = aiohttp.web.Application()
    app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def test_a_task_waiting_for_a_person_calls_them_with_a_signed_webhook(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    sessions = {("orders", "implementer"): [ADD_MIGRATION]}
    notify = {"notify": {"webhookSecretRef": {"name": "on-call", "key": "url"}}}
    async with receiver() as (url, got):
        secrets = {"on-call": {"url": url, "hmac-key": "shared-secret"}}
        async with cluster(control_plane, tmp_path, remote, [MIGRATION], sessions,
                           checks=IMPORTS, escalation=notify, secrets=secrets) as c:  # fmt: skip
            headers, raw = await asyncio.wait_for(got.get(), 600)
            task = await c.phase("orders", "AwaitingApproval")
    expected = "sha256=" + hmac.new(b"shared-secret", raw, hashlib.sha256).hexdigest()
    assert headers["X-Agentfactory-Signature-256"] == expected
    body = json.loads(raw)
    assert (body["task"], body["namespace"], body["phase"]) == ("orders", c.ns, "AwaitingApproval")
    assert body["message"] == task["status"]["message"] and "migrations" in body["message"]
    assert body["commands"][0] == (f"kubectl annotate -n {c.ns} agenttask orders"
                                   " agentfactory.dev/approved-by=<your user name>")  # fmt: skip
    assert got.empty(), "one call per phase entered, not one per pass"


@pytest.mark.parametrize(("spec", "unpullable", "said"), [
    # The pod holds no key: the gateway, which reads it for the pod's grant, says it is missing.
    pytest.param({"agents": {"apiKeySecretRef": {"name": "no-key", "key": "api-key"}}}, (),
                 "api-key: the model API refused the key (401 authentication_error: agentfactory"
                 " gateway: the Secret no-key has no key api-key (it has: other))",
                 id="secret-without-the-key"),
    pytest.param({"agents": {"image": "ghcr.io/agentfactory/agent-runner:typo"}},
                 ("ghcr.io/agentfactory/agent-runner:typo",),
                 'cannot start: ImagePullBackOff: Back-off pulling image'
                 ' "ghcr.io/agentfactory/agent-runner:typo"', id="image-not-pullable"),
])  # fmt: skip
async def test_a_stage_pod_that_cannot_start_parks_the_task_with_the_kubelets_words(
    control_plane: ControlPlane, tmp_path: Path, remote: Path, spec: dict[str, Any],
    unpullable: tuple[str, ...], said: str,
) -> None:  # fmt: skip
    # Left alone, such a pod waits until its deadline (30 minutes), then every retry does.
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(),
                       secrets={"no-key": {"other": "x"}}, unpullable=unpullable,
                       **spec) as c:  # fmt: skip
        task = await c.phase("fix-cart", "NeedsAttention", "Merged")
        status = task["status"]
        assert status["reason"] == "SetupFailed" and said in status["message"], status
        assert "agentfactory.dev/retry=" in status["message"]
        assert c.started == ["fix-cart-plan-1"], "one pod, not the retry caps' worth"
