"""How the operator tells what happened to a task: an Event per transition (Warning for
NeedsAttention and Failed), Warnings for trouble that is no transition, the metrics, and the
escalation webhook for a task that has just started waiting for a person."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentfactory import API_VERSION
from agentfactory.controller.notify import NotifyError, post_notification
from agentfactory.core.notification import notification
from agentfactory.core.phases import Phase
from agentfactory.kube.client import Kube, KubeError, SecretRefusedError, path_of

if TYPE_CHECKING:
    from agentfactory.controller.credentials import Credentials
    from agentfactory.controller.metrics import Metrics
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import Observation
    from agentfactory.core.pipeline import Decision
    from agentfactory.loop.ports import Record

log = logging.getLogger("agentfactory.worker")


@dataclass
class KubeJournal:
    """Events, metrics and webhooks of one namespace."""

    namespace: str
    kube: Kube
    credentials: Credentials
    metrics: Metrics | None = None
    _notifying: set[asyncio.Task[None]] = field(default_factory=set)
    """Webhook deliveries under way (held so that they are not collected mid-flight)."""

    async def event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, about: str = "AgentTask"
    ) -> None:
        """Post an Event of *kind* (Normal, Warning) about *obj*, an object of kind *about*."""
        meta = obj["metadata"]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await self.kube.create(path_of("v1", "events", self.namespace), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": about, "name": meta["name"],
                               "namespace": self.namespace, "uid": meta.get("uid", "")},
            "type": kind, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "agentfactory"}, "reportingComponent": "agentfactory",
        })  # fmt: skip

    async def close(self) -> None:
        """Cut the webhook deliveries still under way (the operator is stopping: the status
        and its Events stay the record), and wait until each has closed its connection."""
        jobs = list(self._notifying)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def warn(self, record: Record, reason: str, message: str) -> None:
        await self.event(record.raw, "Warning", reason, message)

    async def transitions(self, record: Record, decision: Decision) -> set[str]:
        """Post an Event per transition (and count it); the reasons posted as Warnings."""
        status, old = decision.status, record.status
        warned: set[str] = set()
        for source, trigger, target in decision.transitions:
            where = f" ({status.stage} #{status.attempt})" if status.stage else ""
            message = f"{source} -> {target}{where}: {status.message or trigger}"[:1000]
            kind = "Warning" if target in (Phase.NEEDS_ATTENTION, Phase.FAILED) else "Normal"
            if kind == "Warning":
                warned.add(str(trigger))
            await self.event(record.raw, kind, str(trigger), message)
            log.info("%s/%s %s -> %s (%s): %s", self.namespace, record.name, source, target,
                     trigger, status.message or "")  # fmt: skip
            if self.metrics:
                self.metrics.transitions.labels(str(trigger)).inc()
                escalated = target in (Phase.AWAITING_APPROVAL, Phase.NEEDS_ATTENTION)
                for rule in status.escalation.rules if escalated and status.escalation else []:
                    self.metrics.escalations.labels(rule).inc()
        if self.metrics:
            tokens = status.usage.input_tokens + status.usage.output_tokens
            before = old.usage.input_tokens + old.usage.output_tokens
            labels = (self.namespace, record.factory)
            if tokens > before:
                self.metrics.tokens.labels(*labels).inc(tokens - before)
            if status.usage.cost_usd > old.usage.cost_usd:
                self.metrics.cost.labels(*labels).inc(status.usage.cost_usd - old.usage.cost_usd)
        return warned

    def attempt_ended(self, stage: str, label: str, seconds: float | None) -> None:
        if self.metrics:
            if seconds is not None:
                self.metrics.stage_seconds.labels(stage).observe(seconds)
            self.metrics.attempts.labels(stage, label).inc()

    async def call_a_person(
        self, record: Record, factory: FactorySpecSpec | None, decision: Decision,
        observation: Observation,
    ) -> None:  # fmt: skip
        """Post the escalation webhook for a task that has just entered a phase a person is
        called to, in the background: a slow receiver must not hold the other tasks up."""
        del observation
        if factory is None or not decision.transitions:
            return
        ref = factory.escalation.notify.webhook_secret_ref
        body = notification(record.name, self.namespace, decision.status)
        if ref is None or body is None:
            return

        async def deliver() -> None:
            field = "spec.escalation.notify.webhookSecretRef"
            try:
                secret = await self.credentials.secret(ref.name, record.factory, field)
                url = secret.get(ref.key, "").strip()
                if not url:
                    raise NotifyError(f"{field}: Secret '{ref.name}' has no {ref.key}")
                await post_notification(url, body, secret.get("hmac-key"))
            except (NotifyError, SecretRefusedError, KubeError) as exc:
                log.warning("%s/%s: not notified: %s", self.namespace, record.name, exc)
                await self.event(record.raw, "Warning", "NotifyFailed", str(exc)[:1000])

        job = asyncio.create_task(deliver(), name=f"notify-{record.name}")
        self._notifying.add(job)
        job.add_done_callback(self._notifying.discard)
