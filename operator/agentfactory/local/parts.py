"""The parts the shared reconcile loop runs on in `agentfactory local`: statuses kept in the
state directory, each factory's sandboxes and forge, and lines printed for people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.core.executors import Attempt, Launch, Observed
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.forges import Forge
    from agentfactory.core.pipeline import Decision
    from agentfactory.core.task import AgentTaskStatus
    from agentfactory.local.driver import LocalFactory
    from agentfactory.loop.ports import Record


@dataclass
class FileStore:
    """Tasks from the files given, statuses in the state directory (one writer: no
    conflicts)."""

    run: LocalFactory

    def factories(self) -> dict[str, FactorySpecSpec]:
        return {name: f.spec.spec for name, f in self.run.factories.items()}

    def tasks(self) -> list[Record]:
        return [self.run.record(name) for name in self.run.order()]

    def task(self, name: str) -> Record | None:
        return self.run.record(name) if name in self.run.tasks else None

    async def write(self, record: Record, status: AgentTaskStatus) -> Record | None:
        self.run.save(record.name, status)
        return self.run.record(record.name)

    async def fresh(self, name: str) -> Record | None:
        return self.task(name)


@dataclass
class Executors:
    """Each factory's sandboxes."""

    run: LocalFactory

    async def launch(self, launch: Launch) -> None:
        await self.run.factories[launch.attempt.factory].executor.launch(launch)

    async def observe(self, attempt: Attempt) -> Observed:
        return await self.run.factories[attempt.factory].executor.observe(attempt)

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        if (factory := self.run.factories.get(attempt.factory)) is not None:
            await factory.executor.remove(attempt, keep=keep)


@dataclass
class Forges:
    """Each factory's forge, made when the files were loaded."""

    run: LocalFactory

    async def forge(self, name: str, spec: FactorySpecSpec) -> Forge:
        del spec
        return self.run.factories[name].forge


@dataclass
class Lines:
    """A line per transition, and one per warning, on the run's output."""

    run: LocalFactory

    async def transitions(self, record: Record, decision: Decision) -> set[str]:
        now, status = self.run.now(), decision.status
        for source, trigger, target in decision.transitions:
            stage = f"{status.stage}#{status.attempt}" if status.stage and status.attempt else "-"
            self.run.out(f"{now:%H:%M:%S}  {record.name:<22} {source:>16} -> {target:<16}"
                         f" {stage:<14} {trigger}: {status.message or ''}".rstrip())  # fmt: skip
        return set()

    async def warn(self, record: Record, reason: str, message: str) -> None:
        del record, reason
        self.run.out(f"          ! {message}")

    def attempt_ended(self, stage: str, label: str, seconds: float | None) -> None:
        """Nothing to count locally."""
