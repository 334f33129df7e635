"""AgentTask handlers: kopf's watches feed the operator's view and wake the namespace's
worker, which does the work (see `worker`). Handlers never call the API themselves, so a
watch event costs no request; the worker's pass decides whether anything is to be done."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kopf

from agentfactory.controller.metrics import Metrics
from agentfactory.controller.settings import leadership
from agentfactory.controller.worker import Worker
from agentfactory.kube.view import View
from agentfactory.manifests.agents import MANAGED

GROUP, VERSION = "agentfactory.dev", "v1alpha1"


def poke(memo: kopf.Memo, namespace: str) -> None:
    """Wake the namespace's worker, starting it on first use."""
    workers: dict[str, tuple[Worker, asyncio.Task[None]]] = memo.workers
    if namespace not in workers:
        worker = Worker(namespace=namespace, kube=memo.kube, view=memo.view,
                        workdir=Path(memo.workdir), metrics=memo.metrics,
                        resync_seconds=float(memo.get("resync_seconds", 30)),
                        github_poll_seconds=float(memo.get("github_poll_seconds", 15)),
                        unschedulable_seconds=float(memo.get("unschedulable_seconds", 600)),
                        leadership=leadership(memo, namespace),
                        gateway=memo.get("gateway"))  # fmt: skip
        workers[namespace] = (worker, asyncio.create_task(worker.run(), name=f"worker-{namespace}"))
    workers[namespace][0].wake.set()


def _observe(memo: kopf.Memo, kind: str, event: kopf.RawEvent) -> None:
    obj: dict[str, Any] = dict(event["object"])
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    if event.get("type") == "DELETED":
        memo.view.drop(kind, namespace, meta.get("name", ""))
    else:
        memo.view.put(kind, obj)
    poke(memo, namespace)


@kopf.on.startup(id="workers")
async def start(memo: kopf.Memo, **_: Any) -> None:
    memo.view = View()
    memo.workers = {}
    memo.metrics = Metrics(lambda: memo.get("view"))
    memo.setdefault("workdir", "/tmp/agentfactory")  # noqa: S108 - the operator pod's emptyDir


@kopf.on.event(GROUP, VERSION, "agenttasks", id="task-event")
async def on_task(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _observe(memo, "agenttasks", event)


@kopf.on.event(GROUP, VERSION, "factoryspecs", id="factory-event")
async def on_factory(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _observe(memo, "factoryspecs", event)


@kopf.on.event("v1", "pods", labels=MANAGED, id="pod-event")
async def on_pod(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _observe(memo, "pods", event)
