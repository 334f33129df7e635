"""Reading stage pods (`agentfactory.kube.pods`): the reasons a pod gives for having no
result, and when a pod that is not done is overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentfactory.core.handoff import RESULT_MARKER
from agentfactory.kube.pods import GRACE, failure_of, outcome_of, overdue

CREATED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)
UNSCHEDULED = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
               "message": "0/3 nodes are available: 3 Insufficient memory."}  # fmt: skip


def pod(phase: str = "Pending", deadline: int = 600, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "t-plan-1", "creationTimestamp": CREATED.isoformat()},
            "spec": {"activeDeadlineSeconds": deadline},
            "status": {"phase": phase, **status}}  # fmt: skip


def test_a_pod_the_scheduler_cannot_place_is_overdue_after_the_unschedulable_wait() -> None:
    waiting = pod(conditions=[UNSCHEDULED])
    assert overdue(waiting, CREATED + TEN_MINUTES - timedelta(seconds=1), TEN_MINUTES) is None
    late = overdue(waiting, CREATED + TEN_MINUTES, TEN_MINUTES)
    assert late is not None and late.reason == "unschedulable"
    assert late.failure == "not scheduled within 600s: 0/3 nodes are available: 3 Insufficient "\
        "memory."  # fmt: skip


def test_a_pending_pod_the_scheduler_has_placed_waits_for_its_deadline() -> None:
    # Pulling a large image is slow but not unschedulable: the kubelet's deadline stops it.
    placed = pod(deadline=1800, conditions=[{"type": "PodScheduled", "status": "True"}])
    assert overdue(placed, CREATED + TEN_MINUTES * 2, TEN_MINUTES) is None
    late = overdue(placed, CREATED + timedelta(seconds=1800) + GRACE, TEN_MINUTES)
    assert late is not None and late.reason == "timeout"
    assert late.failure == "still not done 1800s after it was created"


def test_a_short_deadline_still_stops_an_unscheduled_pod_first() -> None:
    waiting = pod(deadline=60, conditions=[UNSCHEDULED])
    late = overdue(waiting, CREATED + timedelta(seconds=60) + GRACE, TEN_MINUTES)
    assert late is not None and late.reason == "unschedulable"
    assert late.failure.startswith("never scheduled: 0/3 nodes")


def test_a_finished_pod_is_never_overdue() -> None:
    done = pod("Succeeded", conditions=[UNSCHEDULED])
    assert overdue(done, CREATED + timedelta(days=1), TEN_MINUTES) is None


def test_the_reasons_a_failed_pod_gives() -> None:
    deadline = failure_of(pod("Failed", reason="DeadlineExceeded", message="too long"))
    evicted = failure_of(pod("Failed", reason="Evicted", message="low on memory"))
    oom = failure_of(
        pod(
            "Failed",
            containerStatuses=[
                {"name": "agent", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
            ],
        )
    )
    checkout = failure_of(
        pod(
            "Failed",
            initContainerStatuses=[
                {
                    "name": "checkout",
                    "state": {"terminated": {"exitCode": 1, "message": "no such ref"}},
                }
            ],
        )
    )
    assert deadline is not None and deadline.reason == "timeout"
    assert evicted is not None and evicted.reason == "evicted"
    assert oom is not None and oom.reason == "oom-killed"
    assert checkout is not None and checkout.failure == "the checkout failed: no such ref"
    assert checkout.reason == "error"
    refused = failure_of(
        pod(
            "Failed",
            initContainerStatuses=[
                {
                    "name": "checkout",
                    "state": {
                        "terminated": {
                            "exitCode": 3,
                            "message": "the forge refused the credentials (...)",
                        }
                    },
                }
            ],
        )
    )
    assert refused is not None and refused.reason == "setup", "no retry mends a refused token"
    assert failure_of(pod("Succeeded")) is None


def test_the_last_result_line_of_the_log_is_the_result() -> None:
    log = f'{RESULT_MARKER}{{"old": 1}}\nnoise\n{RESULT_MARKER}{{"new": 2}}\ntrailing\n'
    assert outcome_of(pod("Succeeded"), log).result_json == '{"new": 2}'
    garbled = outcome_of(pod("Succeeded"), "Traceback: boom\n")
    assert garbled.reason == "malformed-result" and "Traceback: boom" in garbled.failure


def test_an_agent_image_that_exits_non_zero_fails_its_attempt_with_its_words() -> None:
    crashed = failure_of(pod("Failed", initContainerStatuses=[
        {"name": "checkout", "state": {"terminated": {"exitCode": 0}}},
        {"name": "engine", "state": {"terminated": {"exitCode": 2, "message": "unknown role"}}},
    ]))  # fmt: skip
    assert crashed is not None and crashed.reason == "error"
    assert crashed.failure == "the agent image exited 2 without handing back a result: unknown role"
    killed = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    oom = failure_of(pod("Failed", initContainerStatuses=[{"name": "engine", "state": killed}]))
    assert oom is not None and oom.reason == "oom-killed"
