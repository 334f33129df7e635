"""Status conditions in the Kubernetes shape, and the one function that sets them.

`lastTransitionTime` changes only when `status` flips (API conventions), so
re-asserting a condition with a new message does not look like a new event.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from agentfactory.core.base import StatusModel

ConditionStatus = Literal["True", "False", "Unknown"]


class ConditionType(StrEnum):
    """Condition types, defined once."""

    READY = "Ready"
    CREDENTIALS_VALID = "CredentialsValid"
    PROGRESSING = "Progressing"
    AWAITING_HUMAN = "AwaitingHuman"
    SUCCEEDED = "Succeeded"


class Condition(StatusModel):
    """One observation of an aspect of the resource's state."""

    type: str = Field(min_length=1, max_length=316)
    """The aspect this condition describes (Ready, Progressing, AwaitingHuman, ...)."""
    status: ConditionStatus
    """Whether the condition holds: "True", "False" or "Unknown"."""
    reason: str = Field(
        min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    """A CamelCase machine-readable reason for the last change."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation."""
    last_transition_time: datetime
    """When `status` last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The `metadata.generation` this condition was computed from."""


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return *conditions* with *type* set; other conditions are kept in order."""
    previous = next((cond for cond in conditions if cond.type == type), None)
    unchanged = previous is not None and previous.status == status
    condition = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=previous.last_transition_time if previous and unchanged else now,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, condition]
    return [condition if cond.type == type else cond for cond in conditions]
