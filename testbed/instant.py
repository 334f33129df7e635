"""A kubelet that finishes each stage pod bound to its Node at once with a scripted result,
for the fault tests and the operator benchmark: what runs is the operator (and its git work)
against the real API server, not agents.

Each pod's end comes from a script: a result (the log line the operator reads, served where
the API server's `pods/log` asks), a failure as a real kubelet reports it (evicted,
OOM-killed, a malformed result), or "hold", which leaves the pod running until the test
releases it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentfactory import API_VERSION
from agentfactory.core.handoff import (
    RESULT_MARKER,
    AgentResult,
    CheckReport,
    CheckRun,
    ImplementationOutput,
    PlanOutput,
    VerdictOutput,
)
from testbed.node import now

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    import aiohttp

    from testbed.node import Node

PHASE_OF_STAGE = {"plan": "Planning", "plan-review": "PlanReview", "implement": "Implementing",
                  "ci": "CI", "code-review": "CodeReview"}  # fmt: skip
ROLE_OF_STAGE = {"plan": "planner", "plan-review": "plan-reviewer", "implement": "implementer",
                 "code-review": "code-reviewer"}  # fmt: skip


def result(stage: str, task: str, diff: str | None = None) -> str:
    """The result a stage pod of *task* hands back: a plan, an approval, passing checks, or a
    patch (*diff*, by default one adding `work/<task>.txt`)."""
    if stage == "ci":
        passed = CheckRun(name="test", command="true", exit_code=0, status="passed")
        return CheckReport(checks=[passed]).model_dump_json(by_alias=True)
    fields: dict[str, Any] = {"role": ROLE_OF_STAGE[stage], "status": "completed",
                              "stopped_by": "completed"}  # fmt: skip
    if stage == "plan":
        fields["plan"] = PlanOutput(summary="Add the file.", steps=["Write it"])
    elif stage == "implement":
        fields["implementation"] = ImplementationOutput(summary="Added.", rollback="Revert.")
        fields["diff"] = diff or (
            f"diff --git a/work/{task}.txt b/work/{task}.txt\nnew file mode 100644\n"
            f"--- /dev/null\n+++ b/work/{task}.txt\n@@ -0,0 +1 @@\n+{task}\n"
        )
    else:
        fields["verdict"] = VerdictOutput(verdict="APPROVE", summary="Fine.")
    return AgentResult(**fields).model_dump_json(by_alias=True)


def factory(name: str, remote: Path, **spec: Any) -> dict[str, Any]:
    """A FactorySpec on the git remote *remote* whose stage pods this kubelet answers (the
    checks are never run); *spec* adds top-level fields."""
    return {"apiVersion": API_VERSION, "kind": "FactorySpec", "metadata": {"name": name},
            "spec": {"repository": {"url": str(remote), "forge": "git"},
                     "agents": {"apiKeySecretRef": {"name": "anthropic", "key": "api-key"}},
                     "checks": [{"name": "test", "command": "true"}], **spec}}  # fmt: skip


def task(name: str, factory_name: str, depends: list[str]) -> dict[str, Any]:
    """An AgentTask whose scripted patch adds `work/<name>.txt`, its whole scope."""
    return {"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name},
            "spec": {"factoryRef": factory_name, "goal": f"Add work/{name}.txt.",
                     "acceptanceCriteria": ["The file exists."],
                     "scope": {"paths": [f"work/{name}.txt"]}, "dependsOn": depends}}  # fmt: skip


@dataclass(frozen=True)
class End:
    """How a pod ends: its agent's log and exit, and the pod's phase and reason."""

    log: str = ""
    exit_code: int = 0
    container_reason: str = "Completed"
    phase: str = "Succeeded"
    reason: str | None = None
    message: str = ""
    """The agent container's termination message (what the runner last wrote there)."""


def succeed(stage: str, task: str, diff: str | None = None) -> End:
    """The pod hands back its scripted result (an implementer's patch: *diff*)."""
    return End(log=f"{RESULT_MARKER}{result(stage, task, diff)}\n")


EVICTED = End(phase="Failed", reason="Evicted", exit_code=137, container_reason="Error")
OOM_KILLED = End(phase="Failed", exit_code=137, container_reason="OOMKilled")
MALFORMED = End(log=f'{RESULT_MARKER}{{"role": "planner", "status": \n')
HOLD = None
"""A script's answer to leave the pod running until `release`."""


def happy(stage: str, task: str, attempt: int) -> End | None:
    del attempt
    return succeed(stage, task)


@dataclass
class InstantKubelet:
    """Runs its Node (`testbed/node.py`) and finishes the stage pods bound to it as they come;
    `started` lists them in order, and `available` when each task's latest result was
    written."""

    node: Node
    script: Callable[[str, str, int], End | None] = happy
    started: list[str] = field(default_factory=list)
    deadlines: dict[str, int | None] = field(default_factory=dict)
    """Each started pod's activeDeadlineSeconds."""
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    available: dict[str, tuple[str, float]] = field(default_factory=dict)
    _jobs: set[asyncio.Task[None]] = field(default_factory=set)
    _http: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Register the node, then watch its pods (again when the watch drops)."""
        async with self.node.api.session() as http:
            self._http = http
            await self.node.start(http)
            await self.node.watch(http, self._seen)

    async def stop(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        await self.node.stop()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        job = asyncio.create_task(work)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def _seen(self, kind: str, pod: dict[str, Any]) -> None:
        assert self._http is not None
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            return
        if pod["metadata"].get("deletionTimestamp"):  # its containers stop at once
            self.held.pop(name, None)
            self._spawn(self.node.confirm_deletion(self._http, pod))
            return
        phase = (pod.get("status") or {}).get("phase")
        if kind != "ADDED" or phase not in (None, "Pending") or name in self.started:
            return
        self.started.append(name)
        self.deadlines[name] = pod["spec"].get("activeDeadlineSeconds")
        labels = pod["metadata"].get("labels") or {}
        stage, task = labels["agentfactory.dev/stage"], labels["agentfactory.dev/task"]
        end = self.script(stage, task, int(labels["agentfactory.dev/attempt"]))
        if end is None:
            self.held[name] = pod
            self._spawn(self.node.write_status(self._http, pod, {
                "phase": "Running", "startTime": now()}))  # fmt: skip
            return
        self._spawn(self.finish(pod, end))

    async def resize(self, memory: str) -> None:
        """Grow (or shrink) the node's memory, as an autoscaler would."""
        assert self._http is not None
        await self.node.resize(self._http, memory)

    async def release(self, name: str, end: End | None = None) -> None:
        """Finish a held pod (with its scripted success unless *end* says otherwise)."""
        pod = self.held.pop(name)
        labels = pod["metadata"]["labels"]
        stage, task = labels["agentfactory.dev/stage"], labels["agentfactory.dev/task"]
        await self.finish(pod, end or succeed(stage, task))

    async def finish(self, pod: dict[str, Any], end: End) -> None:
        assert self._http is not None
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        self.node.logs[meta["namespace"], meta["name"], "agent"] = end.log

        def state(container: dict[str, Any], terminated: dict[str, Any]) -> dict[str, Any]:
            return {"name": container["name"], "image": container["image"], "imageID": "",
                    "ready": False, "restartCount": 0,
                    "state": {"terminated": {"startedAt": now(), "finishedAt": now(),
                                             **terminated}}}  # fmt: skip

        spec = pod["spec"]
        status: dict[str, Any] = {
            "phase": end.phase,
            "initContainerStatuses": [state(c, {"exitCode": 0, "reason": "Completed"})
                                      for c in spec.get("initContainers", [])],
            "containerStatuses": [state(c, {"exitCode": end.exit_code,
                                            "reason": end.container_reason,
                                            **({"message": end.message} if end.message else {})})
                                  for c in spec["containers"]],
        }  # fmt: skip
        if end.reason:
            status |= {
                "reason": end.reason,
                "message": f"The node was low on memory ({end.reason})",
            }
        stage = labels["agentfactory.dev/stage"]
        self.available[labels["agentfactory.dev/task"]] = (PHASE_OF_STAGE[stage],
                                                           time.perf_counter())  # fmt: skip
        await self.node.write_status(self._http, pod, status)
