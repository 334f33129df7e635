"""Stage attempts through an executor: launch the one the status calls for, read what it
came to, remove it once its outcome is recorded.

What an attempt is given (its contract or checks, its commit, read-only credentials) and
how its outcome becomes an observation are the same for every executor, so a task moves
through the same phases on a laptop and on a cluster.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agentfactory.core.executors import Absent, Attempt, Launch, LaunchError, Outcome, RefusedError
from agentfactory.core.handoff import AgentResult, CheckReport
from agentfactory.core.observations import CIFinished, StageFailed
from agentfactory.core.phases import Stage
from agentfactory.core.task import Usage
from agentfactory.stages import (
    agent_inputs,
    agent_observation,
    ci_checks,
    ci_observation,
)

if TYPE_CHECKING:
    from agentfactory.core.executors import Executor
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.observations import FailureReason, Observation
    from agentfactory.core.work import RunAttempt
    from agentfactory.loop.ports import Forges, Journal, Record


@dataclass(frozen=True)
class Ended:
    """What a finished attempt came to, and what to remove once that is recorded."""

    observation: Observation
    attempt: Attempt | None
    """The attempt to remove (None: nothing is the operator's to remove)."""
    keep: bool = False
    """Keep it for debugging (a failed attempt)."""


@dataclass
class Attempts:
    """Runs a task's current stage attempt."""

    executor: Executor
    forges: Forges
    journal: Journal
    namespace: str

    async def advance(
        self, task: Record, factory: FactorySpecSpec, work: RunAttempt
    ) -> Ended | None:
        """Launch the attempt if it is not running; what it came to once it has finished
        (None while it runs)."""
        attempt = Attempt(task=task.name, task_uid=task.uid, namespace=self.namespace,
                          factory=task.factory, stage=work.stage, attempt=work.attempt)  # fmt: skip
        try:
            observed = await self.executor.observe(attempt)
            if isinstance(observed, Absent):
                await self.executor.launch(await self._launch(task, factory, attempt))
                observed = await self.executor.observe(attempt)
        except RefusedError as exc:
            # Not the operator's to read or delete: its result is not used; the attempt fails.
            await self.journal.warn(task, "ForeignObject", str(exc))
            return Ended(self._failed(attempt, "error", f"refused: {exc}"), None)
        except LaunchError as exc:
            return Ended(self._failed(attempt, "error", str(exc)), attempt)
        if not isinstance(observed, Outcome):
            return None  # running (or gone again at once: the next pass launches it)
        observation = await self._observation(task, factory, attempt, observed)
        label = observation.reason if isinstance(observation, StageFailed) else "result"
        self.journal.attempt_ended(attempt.stage.value, label, observed.seconds)
        return Ended(observation, attempt, keep=isinstance(observation, StageFailed))

    async def remove(self, ended: Ended) -> None:
        """Remove the attempt once its outcome is recorded."""
        if ended.attempt is not None:
            await self.executor.remove(ended.attempt, keep=ended.keep)

    def _failed(self, attempt: Attempt, reason: FailureReason, message: str) -> StageFailed:
        self.journal.attempt_ended(attempt.stage.value, reason, None)
        return StageFailed(stage=attempt.stage, attempt=attempt.attempt, reason=reason,
                           message=message)  # fmt: skip

    async def _launch(self, task: Record, factory: FactorySpecSpec, attempt: Attempt) -> Launch:
        status, spec = task.status, task.spec
        assert spec is not None  # noqa: S101 - work is only asked for of valid tasks
        forge = await self.forges.forge(task.factory, factory)
        if attempt.stage == Stage.CI:
            head = status.head_sha or ""
            await asyncio.to_thread(forge.push_branch, status.branch or "", head)
            mode = factory.tests.mode(spec.kind)
            prove = None if mode == "off" else {
                "mode": mode, "testPaths": list(factory.guardrails.test_paths),
                "command": factory.tests.command}  # fmt: skip
            return Launch(attempt, factory, ref=head, base=head, checks=ci_checks(spec, factory),
                          credentials=forge.credentials_for(None), prove=prove)  # fmt: skip
        inputs = await asyncio.to_thread(agent_inputs, task.name, spec, factory, status, forge)
        credentials = forge.credentials_for(inputs.contract.role.value)
        return Launch(attempt, factory, ref=inputs.ref, base=inputs.base,
                      contract=inputs.contract, credentials=credentials)  # fmt: skip

    async def _observation(
        self, task: Record, factory: FactorySpecSpec, attempt: Attempt, outcome: Outcome
    ) -> Observation:
        stage, number = attempt.stage, attempt.attempt
        if stage == Stage.CI and outcome.reason == "timeout":  # ci.timeoutSeconds ran out
            return CIFinished(head_sha=task.status.head_sha or "", state="timeout",
                              attempt=number)  # fmt: skip
        metered = Usage.model_validate(outcome.metered) if outcome.metered is not None else None
        if outcome.result_json is None:  # charged what it reported using before it ended
            spent = Usage.model_validate(outcome.usage) if outcome.usage else Usage()
            spent = metered if metered is not None else spent
            return StageFailed(stage=stage, attempt=number, reason=outcome.reason,
                               message=outcome.failure, usage=spent)  # fmt: skip
        try:
            if stage == Stage.CI:
                report = CheckReport.model_validate_json(outcome.result_json)
                return ci_observation(task.status, report)
            result = AgentResult.model_validate_json(outcome.result_json)
            if metered is not None:  # the gateway's count, not the agent's word
                result.usage = metered
        except ValidationError as exc:
            return StageFailed(stage=stage, attempt=number, reason="malformed-result",
                               message=f"the result does not parse: {exc}"[:2000])  # fmt: skip
        forge = await self.forges.forge(task.factory, factory)
        base = outcome.base
        if base is None:
            base = await asyncio.to_thread(forge.base_sha)
        return await asyncio.to_thread(
            agent_observation, task.name, forge, stage, number, base, result
        )
