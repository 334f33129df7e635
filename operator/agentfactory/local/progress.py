"""`agentfactory local`'s view of the agents at work: every running stage at once, with its
turn, last tools, tokens, cost and time, as a live table on a terminal and as a line per
heartbeat otherwise (a log, a pipe, CI)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentfactory.core.heartbeat import Heartbeat


@dataclass
class _Stage:
    label: str
    started: float
    beat: Heartbeat | None = None


@dataclass
class Progress:
    """The stages running now. Called from the threads that run them."""

    out: Callable[[str], None]
    terminal: bool = False
    """Draw a live table (a terminal) instead of writing lines."""
    clock: Callable[[], float] = time.monotonic
    _stages: dict[str, _Stage] = field(default_factory=dict, init=False)
    _live: Live | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def started(self, pod: str, label: str) -> None:
        with self._lock:
            self._stages[pod] = _Stage(label, self.clock())
            if self.terminal and self._live is None:
                self._live = Live(self._table(), console=Console(), refresh_per_second=4,
                                  transient=True, get_renderable=self._table)  # fmt: skip
                self._live.start()

    def beat(self, pod: str, heartbeat: Heartbeat) -> None:
        with self._lock:
            stage = self._stages.get(pod)
            if stage is None:
                return
            stage.beat = heartbeat
            if self._live is not None:
                self._live.refresh()  # at once, not at the next tick
        if not self.terminal:
            self.out(f"          {pod:<30} {_said(heartbeat)}")

    def ended(self, pod: str) -> None:
        with self._lock:
            self._stages.pop(pod, None)
            if self._live is not None and not self._stages:
                self._live.stop()
                self._live = None

    def _table(self) -> Table:
        table = Table(title="agents at work", title_justify="left", expand=False)
        for column in ("attempt", "stage", "turn", "last tools", "tokens", "cost", "time"):
            table.add_column(column)
        now = self.clock()
        for pod, stage in list(self._stages.items()):
            beat = stage.beat
            table.add_row(
                pod, stage.label,
                f"{beat.turn}/{beat.max_turns}" if beat else "-",
                ", ".join(beat.tools) if beat else "starting",
                f"{beat.tokens:,}" if beat else "-",
                f"${beat.cost_usd:.4f}" if beat else "-",
                f"{now - stage.started:.0f}s",
            )  # fmt: skip
        return table


def _said(beat: Heartbeat) -> str:
    tools = ", ".join(beat.tools) or "thinking"
    return (f"turn {beat.turn}/{beat.max_turns}  {tools}  {beat.tokens:,} tokens"
            f"  ${beat.cost_usd:.4f}  {beat.elapsed_seconds:.0f}s")  # fmt: skip
