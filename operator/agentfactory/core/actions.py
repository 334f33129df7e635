"""Actions: what the adapters must do after a decision, in order.

Every action is idempotent by construction: it names the exact stage attempt, head or
branch it is about, so performing it twice (after a crash) changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.core.phases import Stage


@dataclass(frozen=True)
class LaunchStage:
    """Start a fresh agent (or sandbox CI) for *stage*, attempt *attempt*."""

    stage: Stage
    attempt: int
    pod: str
    feedback: str | None


@dataclass(frozen=True)
class CancelStage:
    """Stop the live attempt (its result, if any, is no longer wanted)."""

    stage: Stage
    attempt: int
    pod: str


@dataclass(frozen=True)
class PushBranch:
    """Push the commit *head_sha* to *branch* (the operator pushes, never an agent)."""

    branch: str
    head_sha: str


@dataclass(frozen=True)
class EnsurePullRequest:
    """Open the task's PR for *branch*, or find the one already open."""

    branch: str


@dataclass(frozen=True)
class WaitForChecks:
    """Watch the forge's required checks on *head_sha*."""

    head_sha: str
    required: tuple[str, ...]
    timeout_seconds: int


@dataclass(frozen=True)
class RequestMerge:
    """Merge *head_sha* (pinned: a racing push must make the merge fail)."""

    branch: str
    head_sha: str
    method: str
    attempt: int
    delete_branch: bool


@dataclass(frozen=True)
class Notify:
    """Tell people: an escalation, a task that needs attention, or a failure."""

    reason: str
    message: str


@dataclass(frozen=True)
class Park:
    """The task waits for a person: release its slot and stop its timers."""

    reason: str


Action = (
    LaunchStage
    | CancelStage
    | PushBranch
    | EnsurePullRequest
    | WaitForChecks
    | RequestMerge
    | Notify
    | Park
)
