"""Actions: what the drivers must do once a decision is written, in order (the work a
status calls for is :mod:`agentfactory.core.work`'s).

Every action is idempotent by construction: it names the exact stage attempt, head or
branch it is about, so performing it twice (after a crash) changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.core.phases import Stage


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
class Notify:
    """Tell people: an escalation, a task that needs attention, or a failure."""

    reason: str
    message: str


Action = CancelStage | PushBranch | Notify
