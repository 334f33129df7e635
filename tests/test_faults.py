"""Faults the operator must survive without losing or doubling anything, on the real API
server behind a fault proxy (`tests/proxy.py`): status writes refused or failing, watch
streams cut, watches answered 410 Gone, slow answers, agent pods evicted, OOM-killed or
handing back garbage, a pod no node has room for, and the operator killed at each stage
boundary. Stage pods finish at once with scripted results (`testbed/instant.py`), so each test
is quick and deterministic.

After every fault, every task ends Merged (or NeedsAttention with its reason), merged once,
each stage attempt's pod created once, and no pod or per-pod Secret is left behind.
"""

from __future__ import annotations

import collections
import itertools
import json
import signal
import time
from typing import TYPE_CHECKING

import pytest
from testbed.cluster import operator_process
from testbed.fakes.github_api import FakeGitHub, Fault
from testbed.instant import EVICTED, HOLD, MALFORMED, OOM_KILLED, PHASE_OF_STAGE, End, succeed
from testbed.kube import wait_for

from tests.assembly import NAMES, assert_nothing_lost_or_doubled, line
from tests.githubs import REPO
from tests.proxy import Answer, Slow

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

    from tests.proxy import Request


def is_status_patch(request: Request) -> bool:
    return (request.method, request.plural, request.subresource) == (
        "PATCH", "agenttasks", "status")  # fmt: skip


async def test_status_writes_refused_with_409_or_failing_with_500_are_decided_again(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Of the first 24 status writes, every third fails with a 500 and every fourth with a
    # 409 Conflict (someone else wrote first); the operator must re-read and decide again,
    # never skip a transition or apply one twice.
    writes = itertools.count(1)
    injected: list[int] = []

    def flaky(request: Request) -> Answer | None:
        if not is_status_patch(request):
            return None
        n = next(writes)
        if n > 24:
            return None
        if n % 3 == 0:
            injected.append(500)
            return Answer(500, "InternalError", "etcd hiccup")
        if n % 4 == 0:
            injected.append(409)
            return Answer(409, "Conflict", "the object has been modified")
        return None

    async with line(control_plane, tmp_path) as ln:
        ln.proxy.faults.append(flaky)
        tasks = await assert_nothing_lost_or_doubled(ln)
    assert injected.count(500) == 8 and injected.count(409) == 4
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())


async def test_watch_streams_cut_again_and_again_lose_no_event(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Every 12th request cuts every open watch of the operator's (kopf's).
    served = itertools.count(1)
    cuts: list[int] = []

    def cutter(request: Request) -> Answer | None:
        if next(served) % 12 == 0:
            cuts.append(ln.proxy.drop_watches())
        return None

    async with line(control_plane, tmp_path) as ln:
        ln.proxy.faults.append(cutter)
        tasks = await assert_nothing_lost_or_doubled(ln)
    assert len(cuts) >= 10 and sum(cuts) >= 10, cuts
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())


async def test_watches_answered_410_gone_and_slow_answers_lose_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Every second watch the operator opens is answered 410 Gone (its resourceVersion was
    # compacted away), and every eighth other request is answered a second late.
    watches, others = itertools.count(1), itertools.count(1)
    gone: list[str] = []

    def expired(request: Request) -> Answer | Slow | None:
        if request.watch:
            if next(watches) % 2 == 0:
                gone.append(request.path)
                return Answer(410, "Expired", "too old resource version: 1 (2)")
            return None
        return Slow(1.0) if next(others) % 8 == 0 else None

    async with line(control_plane, tmp_path) as ln:
        ln.proxy.faults.append(expired)
        tasks = await assert_nothing_lost_or_doubled(ln)
    assert len(gone) >= 2, gone  # one watch answered 410, and again when it came back
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
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with line(control_plane, tmp_path, broken_first_attempts) as ln:
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
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with line(control_plane, tmp_path, always_evicted) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
        (kept,) = await ln.items(ln.pods)
    assert kept["metadata"]["name"] == "gamma-implement-3", "the last failed pod, for debugging"
    gamma = tasks["gamma"]["status"]
    assert gamma["phase"] == "NeedsAttention" and gamma["reason"] == "RetriesExhausted"
    assert "evicted" in gamma["message"].lower()
    assert [p for p in ln.kubelet.started if p.startswith("gamma-implement")] == [
        "gamma-implement-1", "gamma-implement-2", "gamma-implement-3"]  # fmt: skip
    assert tasks["alpha"]["status"]["phase"] == tasks["beta"]["status"]["phase"] == "Merged"


async def test_a_pod_no_node_has_room_for_fails_its_attempt_with_the_schedulers_words(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Stage pods ask for more memory than the node has: the real scheduler leaves the first
    # ones Pending, the kubelet never sees them and their deadline never fires; the operator
    # stops each after --unschedulable-seconds (1 here) and tries again. Then the node grows
    # (an autoscaler's work) and the line finishes.
    roomy = {"sandbox": {"resources": {"requests": {"memory": "32Gi"},
                                       "limits": {"memory": "32Gi"}}}}  # fmt: skip
    async with line(control_plane, tmp_path, factory_spec=roomy, unschedulable_seconds=1) as ln:
        first = await wait_for(
            ln.api,
            ln.tasks_path,
            "alpha",
            lambda o: any(
                h["reason"] == "StageRetried" for h in (o.get("status") or {}).get("history", [])
            ),
        )
        await ln.kubelet.resize("64Gi")
        # Until the node grew, first plan attempts found no room (how many, timing decides).
        tasks = await assert_nothing_lost_or_doubled(ln, unscheduled=lambda p: "-plan-" in p)
    (retried,) = [h for h in first["status"]["history"] if h["reason"] == "StageRetried"]
    said = retried["message"]  # the scheduler's words, however many nodes it looked at
    assert "not scheduled within 1s: 0/" in said and "Insufficient memory" in said, said
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values())
    assert "alpha-plan-1" not in ln.kubelet.started, "no node ever got it"


BAD_GATEWAY = Fault((502, {"message": "Server Error"}, {}))


async def test_github_failing_and_rate_limiting_through_a_run_loses_and_doubles_nothing(
    control_plane: ControlPlane, tmp_path: Path
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
        async with line(control_plane, tmp_path, github=github) as ln:
            tasks = await assert_nothing_lost_or_doubled(ln)
            stuck = [e["message"] for e in await ln.items(ln.events)
                     if e["reason"] == "StageStuck"]  # fmt: skip
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
RUN = ("--standalone", "--metrics-port", "0", "--resync-seconds", "1")


@pytest.mark.parametrize("stage", ["plan", "plan-review", "implement", "ci", "code-review"])
async def test_an_operator_killed_while_a_stage_ends_resumes_without_doubling(
    control_plane: ControlPlane, tmp_path: Path, stage: str
) -> None:
    # alpha's pod of *stage* is held; the operator is SIGKILLed; the pod then finishes (its
    # result waits in the API with no operator alive); a new operator takes over.
    def hold(pod_stage: str, name: str, attempt: int) -> End | None:
        if (name, pod_stage, attempt) == ("alpha", stage, 1):
            return HOLD
        return succeed(pod_stage, name)

    log = tmp_path / "operator.log"
    async with line(control_plane, tmp_path, hold, operator=False) as ln:
        run = (*RUN, "--namespace", ln.ns)
        async with operator_process(ln.kubeconfig, ln.workdir, log, *run) as first:
            # Running: bound, and held by the kubelet (the scheduler binds it after creation).
            await wait_for(ln.api, ln.pods, f"alpha-{stage}-1",
                           lambda o: o["status"].get("phase") == "Running", within=60)  # fmt: skip
            first.send_signal(signal.SIGKILL)
            await first.wait()
        await ln.kubelet.release(f"alpha-{stage}-1")
        async with operator_process(ln.kubeconfig, ln.workdir, log, *run):
            tasks = await assert_nothing_lost_or_doubled(ln, killed=True)
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values()), log.read_text()[-3000:]
    # The held attempt's result was used: no retry, and the move out of its phase names it.
    # (A later attempt of CI may still come: a base moved by another merge is re-verified.)
    history = tasks["alpha"]["status"]["history"]
    assert "StageRetried" not in [h["reason"] for h in history], history
    left = next(h for h in history if h["from"] == PHASE_OF_STAGE[stage])
    assert left.get("pod") == f"alpha-{stage}-1", history


async def test_an_operator_killed_while_merging_merges_once(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    async with line(control_plane, tmp_path, operator=False) as ln:
        run = (*RUN, "--namespace", ln.ns)
        async with operator_process(ln.kubeconfig, ln.workdir, log, *run) as first:
            await wait_for(ln.api, ln.tasks_path, "alpha",
                           lambda o: (o.get("status") or {}).get("phase") == "Merging",
                           within=60)  # fmt: skip
            first.send_signal(signal.SIGKILL)
            await first.wait()
        async with operator_process(ln.kubeconfig, ln.workdir, log, *run):
            tasks = await assert_nothing_lost_or_doubled(ln, killed=True)
    assert all(t["status"]["phase"] == "Merged" for t in tasks.values()), log.read_text()[-3000:]


DEADLINE = End(phase="Failed", reason="DeadlineExceeded", exit_code=137, container_reason="Error")


def slow_ci(stage: str, task: str, attempt: int) -> End | None:
    """gamma's CI pod runs past its deadline (ci.timeoutSeconds), as a hung test suite does."""
    return DEADLINE if (task, stage) == ("gamma", "ci") else succeed(stage, task)


async def test_sandbox_ci_that_outlives_ci_timeout_seconds_parks_the_task_for_a_person(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with line(control_plane, tmp_path, slow_ci, factory_spec={
            "ci": {"timeoutSeconds": 120}}) as ln:  # fmt: skip
        tasks = await assert_nothing_lost_or_doubled(ln)
        (ci_pod,) = [p for p in ln.kubelet.started if p.startswith("gamma-ci")]
    gamma = tasks["gamma"]["status"]
    assert gamma["phase"] == "NeedsAttention", gamma
    assert "CI did not finish within ci.timeoutSeconds 120" in gamma["message"]
    assert ci_pod == "gamma-ci-1", "not retried: a person looks first"
    assert ln.kubelet.deadlines["gamma-ci-1"] == 120, "the CI pod's activeDeadlineSeconds"


SPENT = {"inputTokens": 120000, "outputTokens": 30000, "cacheCreationTokens": 0,
         "cacheReadTokens": 0, "costUSD": 0.81}  # fmt: skip


def evicted_after_spending(stage: str, task: str, attempt: int) -> End | None:
    """beta's first implement pod is evicted mid-session: no result, but the runner's last
    progress report in its termination message says what it had used."""
    if (task, stage, attempt) == ("beta", "implement", 1):
        running = {"role": "implementer", "status": "running", "usage": SPENT, "turns": 7}
        return End(phase="Failed", reason="Evicted", exit_code=137, container_reason="Error",
                   message=json.dumps(running))  # fmt: skip
    return succeed(stage, task)


async def test_an_attempt_killed_before_its_result_is_charged_what_it_used(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with line(control_plane, tmp_path, evicted_after_spending) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
    beta, alpha = tasks["beta"]["status"], tasks["alpha"]["status"]
    assert beta["phase"] == "Merged"
    # Charged: the next attempt's budget is what was left, not the whole again.
    assert beta["usage"]["inputTokens"] - alpha["usage"]["inputTokens"] == SPENT["inputTokens"]
    assert beta["usage"]["costUSD"] >= SPENT["costUSD"]
