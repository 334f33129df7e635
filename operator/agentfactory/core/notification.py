"""What a person is told when a task needs them: the body of the escalation webhook
(`escalation.notify.webhookSecretRef`), and its signature. Pure; the operator posts it."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from agentfactory.core.phases import Phase

if TYPE_CHECKING:
    from agentfactory.core.task import AgentTaskStatus

#: The phases a person is called to.
CALLING = (Phase.AWAITING_APPROVAL, Phase.NEEDS_ATTENTION)
#: The header carrying the body's HMAC-SHA256, GitHub's webhook convention.
SIGNATURE_HEADER = "X-Agentfactory-Signature-256"


def notification(task: str, namespace: str, status: AgentTaskStatus) -> dict[str, Any] | None:
    """The JSON body for a task that has just entered a phase a person is called to (None for
    any other phase): what happened, and the commands that answer it."""
    if status.phase not in CALLING:
        return None
    where = f"-n {namespace} agenttask {task}"
    if status.phase == Phase.AWAITING_APPROVAL:
        todo = [f"kubectl annotate {where} agentfactory.dev/approved-by=<your user name>",
                f"kubectl annotate {where} agentfactory.dev/cancel=<your user name>"]  # fmt: skip
        ask = "Read the change, then approve it or cancel the task."
    else:
        todo = [f"kubectl annotate {where} agentfactory.dev/retry=<your user name>",
                f"kubectl annotate {where} agentfactory.dev/cancel=<your user name>"]  # fmt: skip
        ask = "Read why it stopped; fix the cause, then retry it or cancel the task."
    pull = status.pull_request
    return {
        "task": task, "namespace": namespace, "phase": status.phase.value,
        "reason": status.reason or "", "message": status.message or "",
        "branch": status.branch, "headSHA": status.head_sha,
        "pullRequest": pull.url if pull is not None else None,
        "whatToDo": ask, "commands": todo,
    }  # fmt: skip


def signature(key: str, body: bytes) -> str:
    """`sha256=<hex>` of *body* under *key*: the receiver recomputes it to know the sender."""
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
