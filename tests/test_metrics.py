"""The operator's metrics as Prometheus scrapes them, read from the operator's view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentfactory.controller.metrics import Metrics
from agentfactory.kube.view import View


def task(name: str, phase: str, since: datetime | None, factory: str = "shop") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if since is not None:
        status["lastTransitionTime"] = since.isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"namespace": "team", "name": name, "resourceVersion": "1"},
        "spec": {"factoryRef": factory},
        "status": status,
    }


def scrape(view: View) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(Metrics(lambda: view).registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_oldest_task_in_each_phase_is_measured_from_its_last_transition() -> None:
    now = datetime.now(UTC)
    view = View()
    view.put("agenttasks", task("a", "Implementing", now - timedelta(hours=3)))
    view.put("agenttasks", task("b", "Implementing", now - timedelta(minutes=5)))
    view.put("agenttasks", task("c", "CI", now - timedelta(minutes=10)))
    view.put("agenttasks", task("d", "Pending", None))  # never moved: not measured
    samples = scrape(view)

    def oldest(phase: str) -> float:
        labels = (("factory", "shop"), ("namespace", "team"), ("phase", phase))
        return samples[("agentfactory_phase_oldest_seconds", labels)]

    assert 3 * 3600 <= oldest("Implementing") < 3 * 3600 + 60
    assert 600 <= oldest("CI") < 660
    assert not any(
        name == "agentfactory_phase_oldest_seconds" and ("phase", "Pending") in labels
        for name, labels in samples
    )
    by_phase = (("factory", "shop"), ("namespace", "team"), ("phase", "Implementing"))
    assert samples[("agentfactory_tasks", by_phase)] == 2
