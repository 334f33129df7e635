"""Work: what a task's status calls for next, the one answer every driver acts on.

The pipeline decides a task's new status; :func:`work_for` says what that status asks the
drivers to do: run a stage attempt (an agent, or sandbox CI), wait for the forge's checks on
the head, or merge it. Both the operator and `agentfactory local` perform exactly this, and
nothing else, so "what runs next" is written once. It is derived from the status alone, so a
driver restarted at any moment asks again and gets the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfactory.core.phases import ACTIVE, Stage

if TYPE_CHECKING:
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.task import AgentTaskStatus


@dataclass(frozen=True)
class RunAttempt:
    """Run attempt *attempt* of *stage* as a fresh agent (or sandbox CI run) named *name*."""

    stage: Stage
    attempt: int
    name: str


@dataclass(frozen=True)
class AwaitChecks:
    """Wait for the forge's required checks on exactly *head_sha* (CI attempt *attempt*)."""

    head_sha: str
    required: tuple[str, ...]
    timeout_seconds: int
    attempt: int


@dataclass(frozen=True)
class Merge:
    """Merge *head_sha*, pinned: a racing push must make the merge fail."""

    branch: str
    head_sha: str
    method: str
    attempt: int
    delete_branch: bool


Work = RunAttempt | AwaitChecks | Merge


def attempt_name(task: str, stage: Stage, attempt: int) -> str:
    """Deterministic name of a stage attempt (its pod, its sandbox): `<task>-<stage>-<n>`."""
    return f"{task}-{stage.slug}-{attempt}"


def runs_as_attempt(stage: Stage, factory: FactorySpecSpec) -> bool:
    """Whether *stage* runs as an attempt of its own (agents, sandbox CI); merges and the
    forge's checks run on the forge."""
    if stage == Stage.MERGE:
        return False
    return not (stage == Stage.CI and factory.ci.source == "github-checks")


def work_for(task: str, status: AgentTaskStatus, factory: FactorySpecSpec) -> Work | None:
    """The work *status* calls for, or None (the task waits: for admission, the merge slot,
    a person, or nothing because it ended)."""
    stage, attempt = status.stage, status.attempt
    if status.phase not in ACTIVE or stage is None or attempt == 0:
        return None
    if stage == Stage.MERGE:
        return Merge(branch=status.branch or "", head_sha=status.head_sha or "",
                     method=factory.merge.method, attempt=attempt,
                     delete_branch=factory.merge.delete_branch)  # fmt: skip
    if not runs_as_attempt(stage, factory):
        return AwaitChecks(head_sha=status.head_sha or "",
                           required=tuple(factory.required_check_names),
                           timeout_seconds=factory.ci.timeout_seconds, attempt=attempt)  # fmt: skip
    return RunAttempt(stage=stage, attempt=attempt, name=attempt_name(task, stage, attempt))
