"""Prometheus metrics (prometheus-client), served on `/metrics`.

Counts that only grow (attempts, escalations, tokens, cost) are counters updated as the
operator acts. Levels (tasks by phase, the merge queue, live pods) are read from the
operator's view of the cluster at scrape time, so they can never drift from it.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from agentfactory.core.phases import Phase

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from prometheus_client.core import Metric

    from agentfactory.controller.view import View


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
        pods = GaugeMetricFamily("agentfactory_active_pods", "Stage pods not yet finished.")
        view = self._view()
        by_phase: Tally[tuple[str, str, str]] = Tally()
        if view is not None:
            for task in view.tasks():
                namespace = str(task["metadata"].get("namespace", ""))
                factory = str((task.get("spec") or {}).get("factoryRef", ""))
                phase = str((task.get("status") or {}).get("phase", "Pending"))
                by_phase[namespace, factory, phase] += 1
            pods.add_metric([], view.live_pods())
        for namespace, factory in sorted({(n, f) for n, f, _ in by_phase}):
            for phase in Phase:
                count = by_phase[namespace, factory, phase.value]
                phases.add_metric([namespace, factory, phase.value], count)
            queue.add_metric(
                [namespace, factory], by_phase[namespace, factory, Phase.MERGING.value]
            )
        yield phases
        yield queue
        yield pods
