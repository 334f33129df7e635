"""The reconcile loop's ports kept in memory, for tests and benchmarks that drive the shared
loop without an API server or a state directory: tasks in a dict, people told in a list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentfactory.loop.ports import Record

if TYPE_CHECKING:
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.core.pipeline import Decision
    from agentfactory.core.task import AgentTaskStatus


@dataclass
class MemoryStore:
    """Factories and tasks in memory; a write of a record that changed meanwhile is refused,
    as the API server refuses a stale resourceVersion."""

    specs: dict[str, FactorySpecSpec]
    records: dict[str, Record] = field(default_factory=dict)

    def factories(self) -> dict[str, FactorySpecSpec]:
        return dict(self.specs)

    def tasks(self) -> list[Record]:
        return list(self.records.values())

    def task(self, name: str) -> Record | None:
        return self.records.get(name)

    async def write(self, record: Record, status: AgentTaskStatus) -> Record | None:
        if self.records[record.name] is not record:
            return None  # changed meanwhile
        self.records[record.name] = Record(record.name, record.factory, record.spec, status,
                                           created=record.created)  # fmt: skip
        return self.records[record.name]

    async def fresh(self, name: str) -> Record | None:
        return self.records.get(name)


@dataclass
class Said:
    """A line per transition, warning and finished attempt."""

    lines: list[str] = field(default_factory=list)

    async def transitions(self, record: Record, decision: Decision) -> set[str]:
        self.lines += [f"{record.name} {a} -> {b} ({t})" for a, t, b in decision.transitions]
        return set()

    async def warn(self, record: Record, reason: str, message: str) -> None:
        self.lines.append(f"{record.name} ! {reason}: {message}")

    def attempt_ended(self, stage: str, label: str, seconds: float | None) -> None:
        self.lines.append(f"{stage} ended: {label}")
