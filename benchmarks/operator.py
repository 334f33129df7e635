"""Operator benchmarks: `agentfactory run` (kopf, as a process of its own, with the chart's
RBAC) against a real control plane on loopback (`testbed/apiserver.py`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler), with a kubelet that answers every stage pod bound
to its Node at once with a scripted result, so what is measured is the operator and its git
work, not agents.

Run: `.venv/bin/python -m benchmarks.operator [--sizes 100,1000] [--factories 20]` (as a module:
run as a script, this file would shadow the standard library's `operator`).
Prints figures only (no assertions). For each size, N AgentTasks across the factories (a DAG
inside each factory: task j depends on task (j-1)//2) go from Pending to Merged:

1. transition overhead: from the moment a stage's result is written (the kubelet's pod
   status write) to the task's status showing the next phase, p50 and p99, next to the
   API server's own round trip for one status PATCH measured in the same run;
2. API requests per transition, from the API server's audit log (the operator's and kopf's
   requests: all of them, and the status path alone);
3. total time, transitions per second, the operator's peak RSS (VmHWM) and CPU seconds (its
   own and its git processes'), and how each grows from the smaller size to the larger.
"""

from __future__ import annotations

if __name__ == "operator":  # imported by the standard library in its own module's place
    raise SystemExit("run it as a module: python -m benchmarks.operator")

import argparse
import asyncio
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from testbed.apiserver import ControlPlane
from testbed.cluster import WITH_KOPF, audited
from testbed.gitutil import bare_remote
from testbed.identity import RELEASE, operator_kubeconfig
from testbed.instant import InstantKubelet, factory, task
from testbed.kube import Api, wait_for
from testbed.node import Node

from agentfactory import API_VERSION

NS = "bench"
#: The resources a stage pod's life touches.
POD_RESOURCES = {"pods", "pods/log", "secrets", "configmaps"}
TASKS = f"/apis/{API_VERSION}/namespaces/{NS}/agenttasks"
FACTORIES = f"/apis/{API_VERSION}/namespaces/{NS}/factoryspecs"


async def watch_tasks(url: str, http: aiohttp.ClientSession, kubelet: InstantKubelet,
                      overheads: list[float], ended: dict[str, str], total: int,
                      done: asyncio.Event) -> None:  # fmt: skip
    """Samples the transition overhead: a task whose phase moved on from the stage whose
    result became available. Sets *done* when every task has ended (Merged, or stopped)."""
    while True:
        async with http.get(f"{url}{TASKS}", params={"watch": "true"},
                            timeout=aiohttp.ClientTimeout(total=None)) as stream:  # fmt: skip
            async for line in stream.content:
                now = time.perf_counter()
                obj = json.loads(line)["object"]
                name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
                waiting = kubelet.available.get(name)
                if waiting is not None and phase is not None and phase != waiting[0]:
                    overheads.append(now - waiting[1])
                    del kubelet.available[name]
                if phase in ("Merged", "NeedsAttention", "Failed"):
                    ended[name] = phase
                    if len(ended) == total:
                        done.set()
                else:
                    ended.pop(name, None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_figures(pid: int) -> tuple[float, float]:
    """Peak RSS in MiB and CPU seconds (user + system) of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / ticks


async def patch_round_trip(url: str, http: aiohttp.ClientSession, n: int = 300) -> list[float]:
    """The API server's round trip for one status PATCH (a scratch task, before the operator
    starts, deleted after)."""
    await (await http.post(f"{url}{TASKS}", json=task("baseline", "none", []))).release()
    times = []
    merge = {"Content-Type": "application/merge-patch+json"}
    for i in range(n):
        start = time.perf_counter()
        body = {"status": {"message": f"round trip {i}"}}
        async with http.patch(f"{url}{TASKS}/baseline/status", headers=merge,
                              json=body) as answer:  # fmt: skip
            answer.raise_for_status()
        times.append(time.perf_counter() - start)
    await (await http.delete(f"{url}{TASKS}/baseline")).release()
    return times


async def run(size: int, factories: int, root: Path) -> dict[str, float]:
    per_factory = size // factories
    plane = ControlPlane(root / "controlplane").start()
    try:
        return await on(plane, size, factories, per_factory, root)
    finally:
        plane.stop()


async def on(
    plane: ControlPlane, size: int, factories: int, per_factory: int, root: Path
) -> dict[str, float]:
    plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": NS}})  # fmt: skip
    config = operator_kubeconfig(plane, NS, root / "operator.kubeconfig")
    api = Api(plane.url, plane.ssl_context())
    url = api.url
    async with api.session() as http:
        baseline = await patch_round_trip(url, http)
        # One key for every factory: each is listed as one that may use it.
        shared = {"agentfactory.dev/factories": ",".join(f"f{f:02d}" for f in range(factories))}
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "anthropic", "annotations": shared},
                  "stringData": {"api-key": "unused"}}  # fmt: skip
        await (await http.post(f"{url}/api/v1/namespaces/{NS}/secrets", json=secret)).release()
        names: list[str] = []
        for f in range(factories):
            fname = f"f{f:02d}"
            doc = factory(fname, bare_remote(root, fname), concurrency={"maxActiveTasks": 10})
            await (await http.post(f"{url}{FACTORIES}", json=doc)).release()
            for j in range(per_factory):
                name = f"{fname}-t{j:03d}"
                depends = [f"{fname}-t{(j - 1) // 2:03d}"] if j else []
                await (await http.post(f"{url}{TASKS}", json=task(name, fname, depends))).release()
                names.append(name)
        kubelet = InstantKubelet(Node(plane, name="bench-node"))  # every pod succeeds at once
        overheads: list[float] = []
        ended: dict[str, str] = {}
        done = asyncio.Event()
        background = [asyncio.create_task(kubelet.run()),
                      asyncio.create_task(watch_tasks(url, http, kubelet, overheads, ended,
                                                      len(names), done))]  # fmt: skip
        await wait_for(api, "/api/v1/nodes", "bench-node",
                       lambda o: not (o.get("spec") or {}).get("taints"), within=60)  # fmt: skip
        log = (root / "operator.log").open("w")
        start = time.perf_counter()
        operator = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentfactory", "run", "--kubeconfig", str(config),
            "--standalone", "--workdir", str(root / "operator"), "--metrics-port", "0",
            "--liveness-port", "0", "--namespace", NS, "--log-format", "json",
            stdout=log, stderr=log,
        )  # fmt: skip
        try:
            await asyncio.wait_for(done.wait(), timeout=3600)
            elapsed = time.perf_counter() - start
            rss, cpu = proc_figures(operator.pid)
        finally:
            operator.terminate()
            await operator.wait()
            await kubelet.stop()
            for job in background:
                job.cancel()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        user = f"system:serviceaccount:{NS}:{RELEASE}"
        requests = audited(plane, user, WITH_KOPF)
        async with http.get(f"{url}{TASKS}") as answer:
            items = (await answer.json())["items"]
        transitions = sum(len(t["status"]["history"]) for t in items)
        merged = sum(1 for t in items if t["status"]["phase"] == "Merged")
        status_path = requests["PATCH agenttasks/status"] + requests["POST events"]
        per_pod = sum(n for kind, n in requests.items()
                      if kind.split()[1] in POD_RESOURCES)  # fmt: skip
        return {
            "tasks": len(names), "merged": merged, "elapsed": elapsed, "transitions": transitions,
            "pods": len(kubelet.started), "rss": rss, "cpu": cpu,
            "cpu_children": children.ru_utime + children.ru_stime,
            "requests": sum(requests.values()), "status_requests": status_path,
            "pod_requests": per_pod,
            "overhead_p50": statistics.median(overheads),
            "overhead_p99": percentile(overheads, 0.99),
            "samples": len(overheads), "patch_p50": statistics.median(baseline),
            "patch_p99": percentile(baseline, 0.99),
            "top": json.dumps(requests.most_common(8)),
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--factories", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()},"
          f" {platform.machine()}, {os.cpu_count()} cores")  # fmt: skip
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            figures = asyncio.run(run(size, args.factories, Path(tmp)))
        results.append(figures)
        f = figures
        print(
            f"\n{int(f['tasks'])} tasks in {args.factories} factories:"
            f" {int(f['merged'])} Merged, all ended in {f['elapsed']:.1f} s"
        )
        print(
            f"  transitions {int(f['transitions'])} ({f['transitions'] / f['elapsed']:.1f}/s),"
            f" stage pods {int(f['pods'])}"
        )
        print(
            f"  transition overhead p50 {f['overhead_p50'] * 1000:.1f} ms,"
            f" p99 {f['overhead_p99'] * 1000:.1f} ms over {int(f['samples'])} transitions;"
            f" API server status PATCH p50 {f['patch_p50'] * 1000:.2f} ms,"
            f" p99 {f['patch_p99'] * 1000:.2f} ms;"
            f" ratio p50 {f['overhead_p50'] / f['patch_p50']:.0f}x"
        )
        print(
            f"  API requests {int(f['requests'])}: {f['requests'] / f['transitions']:.2f} per"
            f" transition; status path (status PATCH + Event) "
            f"{f['status_requests'] / f['transitions']:.2f} per transition"
        )
        print(
            f"  requests on pods, their logs, Secrets and ConfigMaps (kopf's pod watch included):"
            f" {f['pod_requests'] / f['pods']:.2f} per stage pod"
        )
        print(f"  most frequent: {f['top']}")
        print(
            f"  operator peak RSS {f['rss']:.0f} MiB, CPU {f['cpu']:.1f} s"
            f" (with its git processes and this process' other children:"
            f" {f['cpu_children']:.1f} s)"
        )
    for small, large in itertools.pairwise(results):
        k = large["tasks"] / small["tasks"]
        print(
            f"\n{int(small['tasks'])} -> {int(large['tasks'])} tasks ({k:.0f}x):"
            f" time x{large['elapsed'] / small['elapsed']:.1f},"
            f" operator CPU x{large['cpu'] / small['cpu']:.1f},"
            f" requests x{large['requests'] / small['requests']:.1f},"
            f" peak RSS x{large['rss'] / small['rss']:.2f}"
        )


if __name__ == "__main__":
    main()
