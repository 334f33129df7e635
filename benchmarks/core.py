"""Core benchmarks: how fast the pure core decides, and how the DAG work scales.

Run: `.venv/bin/python benchmarks/core.py`. Prints figures only (no assertions). Each figure
sits next to a baseline measured in the same run, because these machines are noisy:

1. observations applied per second by `decide()`, over whole happy-path runs, against
   the cost of one deep copy of the same status (the floor every decision pays, since the
   core never mutates its input);
2. the ready set and cycle detection of a DAG with n tasks and 3n edges at n = 1k, 10k and
   100k, against a plain dict build over the same tasks; the per-task cost should stay flat
   (linear growth), and the 10x ratios are printed.
"""

from __future__ import annotations

import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.builders import Driver

from agentfactory.core.phases import Phase
from agentfactory.core.scheduler import TaskInfo, find_cycles, ready_set

if TYPE_CHECKING:
    from collections.abc import Callable


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of *repeats* runs, in seconds (the least disturbed by noise)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def bench_decisions() -> None:
    runs = 200
    observations = 0

    def happy_paths() -> None:
        nonlocal observations
        observations = 0
        for _ in range(runs):
            driver = Driver().to(Phase.MERGED)
            observations += len(driver.decisions)

    elapsed = best_of(3, happy_paths)
    status = Driver().to(Phase.CODE_REVIEW).status
    copies = 5000
    copy_time = best_of(3, lambda: [status.model_copy(deep=True) for _ in range(copies)])
    per_decision = elapsed / observations
    per_copy = copy_time / copies
    print(
        f"decide(): {observations / elapsed:,.0f} observations/s"
        f" ({per_decision * 1e6:.1f} us each, {observations} per {runs} runs)"
    )
    print(
        f"  baseline, deep copy of a status: {per_copy * 1e6:.1f} us;"
        f" decision/copy ratio {per_decision / per_copy:.1f}"
    )


def dag(n: int, seed: int = 7) -> list[TaskInfo]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        deps = tuple(f"t{rng.randrange(i)}" for _ in range(3)) if i >= 3 else ()
        phase = Phase.MERGED if rng.random() < 0.3 else Phase.PENDING
        tasks.append(TaskInfo(name=f"t{i}", factory="f", phase=phase, depends_on=deps))
    return tasks


def bench_dag() -> None:
    print("ready set + cycle detection, n tasks with 3n edges:")
    previous: float | None = None
    for n in (1_000, 10_000, 100_000):
        tasks = dag(n)
        edges = sum(len(t.depends_on) for t in tasks)
        repeats = 5 if n < 100_000 else 3
        ready_time = best_of(repeats, lambda tasks=tasks: ready_set(tasks))
        graph = {t.name: t.depends_on for t in tasks}
        cycle_time = best_of(repeats, lambda graph=graph: find_cycles(graph))
        base_time = best_of(repeats, lambda tasks=tasks: {t.name: t.phase for t in tasks})
        total = ready_time + cycle_time
        growth = f"; x{total / previous:.1f} for 10x tasks" if previous else ""
        print(
            f"  n={n:>7,} edges={edges:>7,}: ready {ready_time * 1e3:8.2f} ms,"
            f" cycles {cycle_time * 1e3:8.2f} ms, total {total * 1e3:8.2f} ms"
            f" ({total / n * 1e6:.2f} us/task; {total / base_time:.1f}x a dict build){growth}"
        )
        previous = total


def main() -> None:
    print(
        f"agentfactory core benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC,"
        f" Python {platform.python_version()}, {platform.machine()}"
    )
    bench_decisions()
    bench_dag()


if __name__ == "__main__":
    main()
