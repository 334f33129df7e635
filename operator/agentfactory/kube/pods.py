"""Reading a stage pod: is it done, and what did it hand back?

Pure functions over the pod object as the API server returns it. A pod is done when it
Succeeded or Failed; the reason a failed pod gives (DeadlineExceeded, Evicted, OOMKilled, a
failed checkout) becomes the core's StageFailed reason. A pod that is still Pending or
Running past its deadline plus a grace period is overdue: the kubelet enforces
`activeDeadlineSeconds` only once the pod is scheduled, so a pod that never schedules is
the operator's to stop. One the scheduler has said it cannot place is stopped sooner, after
the operator's unschedulable wait, which leaves a cluster autoscaler time to add a node.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from agentfactory.core.executors import Outcome
from agentfactory.core.handoff import RESULT_MARKER
from agentfactory.manifests.agents import ENGINE_CONTAINER

#: `agentfactory checkout`'s exit code when the forge refused the credentials.
CHECKOUT_ACCESS_REFUSED = 3

#: Beyond a pod's own deadline, how long the operator waits before it calls the pod overdue.
GRACE = timedelta(minutes=2)


def _terminated(statuses: list[dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    for status in statuses or []:
        if status.get("name") == name:
            found: dict[str, Any] | None = (status.get("state") or {}).get("terminated")
            return found
    return None


def used(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The usage the agent last reported in its termination message (which the kubelet reads
    however the container ended: deadline, OOM, eviction), if any."""
    agent = _terminated((pod.get("status") or {}).get("containerStatuses"), "agent") or {}
    try:
        summary = json.loads(agent.get("message") or "")
    except ValueError:
        return None
    usage = summary.get("usage") if isinstance(summary, dict) else None
    return usage if isinstance(usage, dict) else None


def _charged(outcome: Outcome, pod: dict[str, Any]) -> Outcome:
    return replace(outcome, usage=used(pod))


def is_done(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def failure_of(pod: dict[str, Any]) -> Outcome | None:
    """Why a finished pod cannot have a result (with what it used), or None when its log
    should hold one."""
    failure = _failure_of(pod)
    return None if failure is None else _charged(failure, pod)


def _failure_of(pod: dict[str, Any]) -> Outcome | None:
    status = pod.get("status") or {}
    reason = status.get("reason")
    if reason == "DeadlineExceeded":
        return Outcome(None, f"stopped at its deadline: {status.get('message', '')}", "timeout")
    if reason == "Evicted":
        return Outcome(None, f"evicted: {status.get('message', '')}", "evicted")
    checkout = _terminated(status.get("initContainerStatuses"), "checkout")
    if checkout is not None and checkout.get("exitCode") != 0:
        message = (checkout.get("message") or "")[-800:]
        refused = checkout.get("exitCode") == CHECKOUT_ACCESS_REFUSED
        return Outcome(None, f"the checkout failed: {message}", "setup" if refused else "error")
    engine = _terminated(status.get("initContainerStatuses"), ENGINE_CONTAINER)
    if engine is not None and engine.get("reason") == "OOMKilled":
        return Outcome(None, "the agent image ran out of memory (OOMKilled)", "oom-killed")
    if engine is not None and engine.get("exitCode") != 0:
        said = (engine.get("message") or "")[-800:]
        return Outcome(None, f"the agent image exited {engine.get('exitCode')} without handing"
                             f" back a result: {said}", "error")  # fmt: skip
    agent = _terminated(status.get("containerStatuses"), "agent")
    if agent is not None and agent.get("reason") == "OOMKilled":
        return Outcome(None, "the agent ran out of memory (OOMKilled)", "oom-killed")
    return None


def result_from_log(log: str) -> str | None:
    """The last marked result line of a pod's log."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_MARKER):
            return line[len(RESULT_MARKER) :]
    return None


def outcome_of(pod: dict[str, Any], log: str | None) -> Outcome:
    """What a finished pod without a `failure_of` handed back, given its agent's log."""
    text = result_from_log(log or "")
    if text is None:
        agent = _terminated((pod.get("status") or {}).get("containerStatuses"), "agent") or {}
        tail = (log or "")[-800:] or agent.get("message", "")
        return _charged(Outcome(
            None, f"exit code {agent.get('exitCode')}, no result in the log: {tail}",
            "malformed-result",
        ), pod)  # fmt: skip
    return Outcome(text)


#: Why a container waits that no waiting mends: an image the node cannot pull (after the
#: kubelet's first back-off, so a registry's passing error is not one), or a container whose
#: configuration names a Secret or ConfigMap key that is not there.
CANNOT_START = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}


def cannot_start(pod: dict[str, Any]) -> Outcome | None:
    """A pod whose containers cannot start, named with the kubelet's words: the factory's
    set-up, found in seconds rather than at the pod's deadline."""
    status = pod.get("status") or {}
    for group in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(group) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CANNOT_START:
                said = f"{waiting['reason']}: {waiting.get('message', '')}"
                return Outcome(None, f"container {container.get('name')} cannot start: {said}",
                               "setup")  # fmt: skip
    return None


def _unscheduled(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The scheduler's PodScheduled=False condition, while it holds."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return dict(condition)
    return None


def overdue(pod: dict[str, Any], now: datetime, unschedulable_after: timedelta) -> Outcome | None:
    """A pod not done long after it should have been: not placed by the scheduler within
    *unschedulable_after* of its creation, or not done by its deadline plus `GRACE`."""
    created = pod.get("metadata", {}).get("creationTimestamp")
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    if is_done(pod) or not created or not deadline:
        return None
    age = now - datetime.fromisoformat(str(created))
    unscheduled = _unscheduled(pod)
    if unscheduled is not None and age >= unschedulable_after:
        waited = int(unschedulable_after.total_seconds())
        return Outcome(None, f"not scheduled within {waited}s: {unscheduled.get('message', '')}",
                          "unschedulable")  # fmt: skip
    if age < timedelta(seconds=int(deadline)) + GRACE:
        return None
    if unscheduled is not None:
        return Outcome(None, f"never scheduled: {unscheduled.get('message', '')}", "unschedulable")
    return Outcome(None, f"still not done {deadline}s after it was created", "timeout")
