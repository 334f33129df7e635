"""The executor seam: how a stage attempt is run, whatever runs it.

An executor launches one stage attempt (an agent session, or a sandbox CI run) from a
:class:`Launch`, tells what became of it (:data:`Observed`), and removes it. The reconcile
loop calls nothing else, so the Kubernetes executor (a pod per attempt), the local one (a
sandboxed process) and any other (a remote runner, agent-sandbox's SandboxClaims) are
interchangeable: a new executor is one module implementing :class:`Executor`.

Executors are idempotent by the attempt's name: launching an attempt that exists finds it,
removing one that is gone changes nothing. That makes the loop restart-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from agentfactory.core.work import attempt_name

if TYPE_CHECKING:
    from agentfactory.core.common import Check
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.handoff import HandoffContract
    from agentfactory.core.observations import FailureReason
    from agentfactory.core.phases import Stage


@dataclass(frozen=True)
class Attempt:
    """The identity of one stage attempt and where it runs."""

    task: str
    task_uid: str
    namespace: str
    factory: str
    stage: Stage
    attempt: int

    @cached_property
    def pod(self) -> str:
        """Its name (a pod's, a sandbox's)."""
        return attempt_name(self.task, self.stage, self.attempt)


@dataclass(frozen=True)
class Launch:
    """Everything one attempt is given."""

    attempt: Attempt
    factory: FactorySpecSpec
    ref: str
    """The commit its workspace is checked out at."""
    base: str
    """The commit an implementer's diff is taken against."""
    contract: HandoffContract | None = None
    """An agent's handoff contract (None for a CI run)."""
    checks: list[Check] = field(default_factory=list)
    """A CI run's checks."""
    prove: dict[str, Any] | None = None
    """A CI run's break/fix settings (`prove.json`: mode, testPaths, command), if any."""
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    """Read-only forge credentials minted for this attempt alone."""


@dataclass(frozen=True)
class Outcome:
    """A finished attempt: its result's JSON text, or why there is none."""

    result_json: str | None
    failure: str = ""
    reason: FailureReason = "error"
    """For a failure: why there is no result."""
    usage: dict[str, Any] | None = None
    """For a failure: what the session had used when it ended (its last progress report)."""
    base: str | None = None
    """The base the attempt was launched with, when the executor kept it."""
    seconds: float | None = None
    """How long it ran, when the executor knows."""
    metered: dict[str, Any] | None = None
    """What the model gateway counted on the wire for the attempt, when its model calls went
    through one: it replaces whatever usage the attempt itself reported."""


@dataclass(frozen=True)
class Absent:
    """Never launched (or launched before a crash that left no trace): launch it."""


@dataclass(frozen=True)
class Running:
    """Launched and not finished: wait (the executor's events wake the loop)."""


Observed = Absent | Running | Outcome


class RefusedError(Exception):
    """Something that is not the operator's holds the attempt's name: its result is not read,
    and it is left alone (the message says what and why)."""


class LaunchError(Exception):
    """The attempt cannot be launched as it is given (inputs too large): it fails."""


class Executor(Protocol):
    """Runs stage attempts."""

    async def launch(self, launch: Launch) -> None:
        """Start the attempt (or find it started). RefusedError for a foreign object."""
        ...

    async def observe(self, attempt: Attempt) -> Observed:
        """What became of the attempt. RefusedError for a foreign object."""
        ...

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        """Remove the attempt; with *keep*, keep what helps debug a failure (and never its
        credentials) in place of the task's previously kept attempt."""
        ...
