"""Prometheus metrics (prometheus-client), served on `/metrics`.

Counts that only grow (attempts, escalations, tokens, cost) are counters updated as the
operator acts. Levels (tasks by phase, the merge queue, live pods) are read from the
operator's view of the cluster at scrape time, so they can never drift from it.
"""

from __future__ import annotations

from collections import Counter as Tally
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from agentfactory.core.phases import Phase

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from prometheus_client.core import Metric

    from agentfactory.kube.view import View


class Metrics:
    """The operator's metrics, in a registry of their own."""

    def __init__(self, view: Callable[[], View | None]) -> None:
        self.registry = CollectorRegistry()
        self._view = view
        self.stage_seconds = Histogram(
            "agentfactory_stage_duration_seconds", "Stage pod run time, creation to result.",
            ["stage"], registry=self.registry,
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
        )  # fmt: skip
        self.attempts = Counter(
            "agentfactory_stage_attempts", "Stage attempts finished, by stage and outcome.",
            ["stage", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.transitions = Counter(
            "agentfactory_transitions", "Phase transitions, by trigger.", ["trigger"],
            registry=self.registry,
        )  # fmt: skip
        self.escalations = Counter(
            "agentfactory_escalations", "Escalations, by rule.", ["rule"], registry=self.registry
        )
        self.tokens = Counter(
            "agentfactory_tokens", "Model tokens spent, by factory.", ["namespace", "factory"],
            registry=self.registry,
        )  # fmt: skip
        self.cost = Counter(
            "agentfactory_cost_usd", "Estimated model cost in USD, by factory.",
            ["namespace", "factory"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(self)  # a custom collector: levels read at scrape time

    def collect(self) -> Iterable[Metric]:
        phases = GaugeMetricFamily(
            "agentfactory_tasks",
            "AgentTasks by factory and phase.",
            labels=["namespace", "factory", "phase"],
        )
        queue = GaugeMetricFamily(
            "agentfactory_merge_queue_depth",
            "Tasks in Merging, by factory.",
            labels=["namespace", "factory"],
        )
        # What the "stuck in a phase" alert needs without a series per task: per phase, how
        # long the task that entered it first has been there.
        oldest = GaugeMetricFamily(
            "agentfactory_phase_oldest_seconds",
            "Seconds since the longest-waiting task in the phase entered it, by factory.",
            labels=["namespace", "factory", "phase"],
        )
        pods = GaugeMetricFamily("agentfactory_active_pods", "Stage pods not yet finished.")
        view = self._view()
        by_phase: Tally[tuple[str, str, str]] = Tally()
        entered: dict[tuple[str, str, str], datetime] = {}
        if view is not None:
            for task in view.tasks():
                namespace = str(task["metadata"].get("namespace", ""))
                factory = str((task.get("spec") or {}).get("factoryRef", ""))
                status = task.get("status") or {}
                key = (namespace, factory, str(status.get("phase", "Pending")))
                by_phase[key] += 1
                since = _time(status.get("lastTransitionTime"))
                if since is not None and (key not in entered or since < entered[key]):
                    entered[key] = since
            pods.add_metric([], view.live_pods())
        now = datetime.now(UTC)
        for key, since in sorted(entered.items()):
            oldest.add_metric(list(key), (now - since).total_seconds())
        for namespace, factory in sorted({(n, f) for n, f, _ in by_phase}):
            for phase in Phase:
                count = by_phase[namespace, factory, phase.value]
                phases.add_metric([namespace, factory, phase.value], count)
            queue.add_metric(
                [namespace, factory], by_phase[namespace, factory, Phase.MERGING.value]
            )
        yield phases
        yield oldest
        yield queue
        yield pods


def _time(value: object) -> datetime | None:
    """An RFC 3339 time from a status, or None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)
