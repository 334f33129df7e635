"""What an agent at work says after every turn: one line in its log, which people read with
`kubectl logs -f` and `agentfactory local` turns into its live view."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(
    r"^\[heartbeat\] (?P<role>\S+) turn (?P<turn>\d+)/(?P<max>\d+) · (?P<tools>.*) ·"
    r" (?P<tokens>[\d,]+) tokens · \$(?P<cost>[\d.]+) · (?P<elapsed>\d+)s$"
)
_IDLE = "thinking"


@dataclass(frozen=True)
class Heartbeat:
    """One turn of an agent session, as far as it has gone."""

    role: str
    turn: int
    max_turns: int
    tools: tuple[str, ...]
    """The tools the turn called (none: the model only wrote)."""
    tokens: int
    """Tokens of the session so far."""
    cost_usd: float
    elapsed_seconds: float

    def line(self) -> str:
        tools = ", ".join(self.tools) or _IDLE
        return (
            f"[heartbeat] {self.role} turn {self.turn}/{self.max_turns} · {tools} ·"
            f" {self.tokens:,} tokens · ${self.cost_usd:.4f} · {self.elapsed_seconds:.0f}s"
        )

    @classmethod
    def parse(cls, line: str) -> Heartbeat | None:
        """The heartbeat a log line carries, or None."""
        found = _LINE.match(line.rstrip("\n"))
        if found is None:
            return None
        tools = found["tools"]
        return cls(
            role=found["role"], turn=int(found["turn"]), max_turns=int(found["max"]),
            tools=() if tools == _IDLE else tuple(tools.split(", ")),
            tokens=int(found["tokens"].replace(",", "")), cost_usd=float(found["cost"]),
            elapsed_seconds=float(found["elapsed"]),
        )  # fmt: skip
