"""What the reconcile loop is parameterised by: where tasks' state lives (:class:`Store`),
how people hear of it (:class:`Journal`), where each factory's forge comes from
(:class:`Forges`), and the extra sources and chores one driver adds (:class:`Hooks`).

The operator keeps state in the API server and speaks through Events and metrics; the local
driver keeps it in a directory and prints lines. Stages run through a
`core.executors.Executor` either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.forges import Forge
    from agentfactory.core.observations import Observation
    from agentfactory.core.pipeline import Decision
    from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus


@dataclass
class Record:
    """One task as the loop reads it, wherever it is kept."""

    name: str
    factory: str
    spec: AgentTaskSpec | None
    status: AgentTaskStatus
    uid: str = ""
    created: datetime | None = None
    problem: str | None = None
    """Why the spec does not validate."""
    unreadable: str | None = None
    """Why the status does not validate (the loop then leaves the task alone)."""
    raw: Any = field(default=None, repr=False)
    """The store's own form of the task (the API object, for the operator)."""


class Store(Protocol):
    """Where tasks and factories are read and statuses written."""

    def factories(self) -> dict[str, FactorySpecSpec]:
        """The valid factories by name (an invalid one's own status says why)."""
        ...

    def tasks(self) -> list[Record]:
        """Every task, in the order passes work on them."""
        ...

    def task(self, name: str) -> Record | None:
        """The task as the store holds it now."""
        ...

    async def write(self, record: Record, status: AgentTaskStatus) -> Record | None:
        """Write *status* if *record* is still the task's current version: the task as
        written, or None when it changed meanwhile (then see `fresh`)."""
        ...

    async def fresh(self, name: str) -> Record | None:
        """The task read again from where it lives (None: deleted)."""
        ...


class Journal(Protocol):
    """How people hear what happened."""

    async def transitions(self, record: Record, decision: Decision) -> set[str]:
        """Tell each of the decision's transitions; the reasons told as warnings."""
        ...

    async def warn(self, record: Record, reason: str, message: str) -> None:
        """Tell of trouble that is no transition (a notification, a stuck stage)."""
        ...

    def attempt_ended(self, stage: str, label: str, seconds: float | None) -> None:
        """Count a finished attempt (*label*: "result" or why it failed)."""
        ...


class Forges(Protocol):
    """Each factory's forge."""

    async def forge(self, name: str, spec: FactorySpecSpec) -> Forge: ...


@dataclass
class Hooks:
    """What one driver adds to every pass (each a coroutine; none by default)."""

    before: list[Callable[[dict[str, FactorySpecSpec]], Awaitable[None]]] = field(
        default_factory=list
    )
    """Before anything: bring in new tasks (issue intake)."""
    people: list[Callable[[Record, FactorySpecSpec], Awaitable[bool]]] = field(default_factory=list)
    """Per task, before scheduling: people's actions (True: the task moved)."""
    applied: list[Callable[[Record, FactorySpecSpec | None, Decision, Observation],
                           Awaitable[None]]] = field(default_factory=list)  # fmt: skip
    """After each decision that was written (a webhook to call a person)."""
    after: list[Callable[[dict[str, FactorySpecSpec]], Awaitable[None]]] = field(
        default_factory=list
    )
    """After the pass: housekeeping (removing what ended, counting)."""
