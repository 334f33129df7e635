"""The AgentTask reconciler of one namespace: the shared reconcile loop
(`agentfactory.loop`) over the API server, its pods and its forges, passes woken by kopf's
watches.

One worker per namespace is the single writer of its tasks' statuses, so admission and the
merge slot are decided on one consistent view, and no two passes race each other. kopf's
watches wake the worker (a task, pod or factory changed); a periodic resync catches what no
event announces (an overdue pod, a review on the forge). Work is derived from the status
alone (pods by deterministic name), so a restarted operator resumes where the last one
stopped: an existing pod is found, not launched again; a merge that landed is found by the
forge, not repeated.

The worker composes collaborators with one job each: the task records (`records`), Secrets
and forges (`credentials`), Events, metrics and webhooks (`journal`), people's annotations
and issue intake (`people`), the pods (`kube.executor`) and the chores after a pass
(`housekeeping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory import API_VERSION
from agentfactory.controller.credentials import Credentials
from agentfactory.controller.housekeeping import Housekeeping
from agentfactory.controller.journal import KubeJournal
from agentfactory.controller.leadership import Leadership
from agentfactory.controller.people import Annotations, Intake
from agentfactory.controller.records import KubeStore
from agentfactory.kube.client import Kube, path_of
from agentfactory.kube.executor import KubernetesExecutor
from agentfactory.loop.ports import Hooks
from agentfactory.loop.reconciler import Reconciler
from agentfactory.manifests.agents import MANAGED

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.controller.metrics import Metrics
    from agentfactory.forge.registry import ForgeRegistry
    from agentfactory.kube.model_gateway import ModelGateway
    from agentfactory.kube.view import View

log = logging.getLogger("agentfactory.worker")


@dataclass
class Worker:
    """Moves the tasks of one namespace."""

    namespace: str
    kube: Kube
    view: View
    workdir: Path
    metrics: Metrics | None = None
    resync_seconds: float = 30
    github_poll_seconds: float = 15
    """How often a task's PR reviews and checks are read at most (passes come on every watch
    event; the forge's own changes arrive only by asking)."""
    unschedulable_seconds: float = 600
    """How long a stage pod the scheduler cannot place waits before its attempt fails: long
    enough for a cluster autoscaler to add a node, far shorter than most stage deadlines."""
    leadership: Leadership = field(default_factory=Leadership.standalone)
    forges: ForgeRegistry | None = None
    """Where forges come from (the operator's registry by default)."""
    gateway: ModelGateway | None = None
    """The model gateway stage pods reach the model through (None: they get the key)."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    loop: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        ns, kube = self.namespace, self.kube
        self.credentials = Credentials(ns, kube, self.workdir)
        if self.forges is not None:
            self.credentials.registry = self.forges
        self.journal = KubeJournal(ns, kube, self.credentials, self.metrics)
        self.store = KubeStore(ns, kube, self.view, self.journal.warn)
        self.executor = KubernetesExecutor(kube, self.view, self.unschedulable_seconds,
                                           self.credentials.secret, self.gateway)  # fmt: skip
        annotations = Annotations(ns, kube, self.store, self.journal)
        intake = Intake(ns, kube, self.view, self.credentials, self.journal)
        chores = Housekeeping(ns, kube, self.store, self.executor, self.credentials, self.journal)
        hooks = Hooks(before=[self.store.report_unreadable, intake], people=[annotations],
                      applied=[self.journal.call_a_person], after=[chores])  # fmt: skip
        self.loop = Reconciler(self.store, self.executor, self.credentials, self.journal,
                               namespace=ns, hooks=hooks,
                               poll_seconds=self.github_poll_seconds)  # fmt: skip
        annotations.loop = self.loop
        intake.sync = self.loop.sync

    async def run(self) -> None:
        """Pass after pass; between passes, wait for a wake-up or the resync period. While
        another replica leads, no pass runs (see `leadership`)."""
        try:
            await self._passes()
        finally:
            await self.journal.close()
            self.credentials.close()

    async def _passes(self) -> None:
        leading = False
        while not self.stopping.is_set():
            self.wake.clear()
            moved = False
            try:
                if await self.leadership.active():
                    if not leading:  # taking over: our view stood still while we waited
                        await self.refresh()
                        leading = True
                    moved = await self.step()
                else:
                    leading = False
            except Exception:  # the next pass retries; the operator must not stop
                log.exception("pass over namespace %s failed; retrying", self.namespace)
            if not moved:
                period = self.resync_seconds if leading else self.leadership.every
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self.wake.wait()

    def stop(self) -> None:
        """Finish the pass under way (its writes are whole), then end `run`."""
        self.stopping.set()
        self.wake.set()

    async def step(self) -> bool:
        """One pass; True when some task moved (so another pass follows at once)."""
        return await self.loop.step()

    async def refresh(self) -> None:
        """Read the namespace's tasks, factories and stage pods from the API into the view."""
        collections = {
            "agenttasks": path_of(API_VERSION, "agenttasks", self.namespace),
            "factoryspecs": path_of(API_VERSION, "factoryspecs", self.namespace),
            "pods": path_of("v1", "pods", self.namespace),
        }
        for kind, path in collections.items():
            labels = MANAGED if kind == "pods" else None
            self.view.replace(kind, self.namespace, await self.kube.list(path, labels))
