"""Merge queue benchmark: how many CI runs each merged task costs and how long a queue takes
to drain, by speculation depth, on the shared reconcile loop with a real git remote.

Run: `.venv/bin/python -m benchmarks.queue [--tasks 50] [--ci-seconds 1.0] [--depths 1,4,8,16]
[--batches 1]` (every depth with every batch size). Prints figures
only (no assertions). Each queue starts with every task in Merging, reviewed and verified on
the base as it was, and a person's commit on the base after that, so every task must be
verified again before it lands. CI is simulated (`testbed.merge_queue.TreeCI`): it takes
`--ci-seconds` of wall time, runs side by side with others, and fails any head that carries a
red task's change. Baseline in the same run: one task alone through the queue (one CI run and
its merge). Depth 1 is the queue without speculation (one task verified at a time); batch 1
verifies every task with a CI run of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.merge_queue import queue_of

from agentfactory.core.phases import Phase


async def drain(tasks: int, depth: int, ci_seconds: float, red_every: int = 0,
                batch: int = 1) -> dict[str, float]:  # fmt: skip
    """One queue drained; its figures."""
    red = tuple(range(red_every - 1, tasks, red_every)) if red_every else ()
    with tempfile.TemporaryDirectory() as root:
        run = queue_of(Path(root), tasks, red=red, depth=depth, ci_seconds=ci_seconds,
                       batch=batch)  # fmt: skip
        seconds = await run.run()
        merged = run.merged()
        sent_back = [n for n, r in run.store.records.items()
                     if r.status.phase == Phase.IMPLEMENTING]  # fmt: skip
        green = tasks - len(red)
        return {"seconds": seconds, "merged": len(merged), "green": green,
                "sent_back": len(sent_back), "red": len(red), "ci_runs": len(run.ci.runs),
                "per_merged": len(run.ci.runs) / max(1, len(merged))}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--ci-seconds", type=float, default=1.0)
    parser.add_argument("--depths", default="1,4,8,16")
    parser.add_argument("--batches", default="1")
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, {platform.machine()}; {args.tasks} tasks per"
          f" queue, CI {args.ci_seconds:.1f} s per run")  # fmt: skip
    alone = await drain(1, 4, args.ci_seconds)
    print(f"baseline: one task alone through the queue: {alone['seconds']:.2f} s,"
          f" {alone['ci_runs']:.0f} CI run")  # fmt: skip
    print()
    print("| queue | depth | batch | merged | sent back | CI runs | CI runs per merged task |"
          " time | time / one task alone |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    shapes = [(int(d), int(b)) for d in args.depths.split(",") for b in args.batches.split(",")]
    for red_every in (0, 10):
        for depth, batch in shapes:
            got = await drain(args.tasks, depth, args.ci_seconds, red_every, batch)
            kind = "all green" if not red_every else f"1 in {red_every} red"
            print(f"| {kind} | {depth} | {batch} | {got['merged']:.0f}/{got['green']:.0f} |"
                  f" {got['sent_back']:.0f}/{got['red']:.0f} | {got['ci_runs']:.0f} |"
                  f" {got['per_merged']:.2f} | {got['seconds']:.1f} s |"
                  f" {got['seconds'] / alone['seconds']:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
