"""The speculative merge queue through the shared loop, on a real git remote: queued tasks
are each verified on top of those ahead, side by side, and land as verified; a red one goes
back with its failure, and only those behind it are verified again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.merge_queue import queue_of

from agentfactory.core.phases import Phase

if TYPE_CHECKING:
    from pathlib import Path


async def test_queued_tasks_land_in_order_each_verified_once_on_the_ones_ahead(
    tmp_path: Path,
) -> None:
    run = queue_of(tmp_path, 6)
    await run.run()
    names = [f"t{i:02d}" for i in range(6)]
    assert run.merged() == names, "\n".join(run.said.lines)
    assert [task for task, _ in run.ci.runs] == names, "one CI run each, in queue order"
    # Each merged exactly the tree its CI run verified, so none was verified again.
    last = run.ci.runs[-1][1]
    assert run.main_tree() == run.forge.git("rev-parse", f"{last}^{{tree}}")
    assert all(run.status(n).phase == Phase.MERGED for n in names)


async def test_a_red_task_goes_back_and_only_those_behind_it_are_verified_again(
    tmp_path: Path,
) -> None:
    run = queue_of(tmp_path, 6, red=(2,))
    await run.run()
    assert run.merged() == ["t00", "t01", "t03", "t04", "t05"], "\n".join(run.said.lines)
    red = run.status("t02")
    assert red.phase == Phase.IMPLEMENTING and red.queue is None
    assert "broken by work/t02.broken" in red.feedback
    verified = [task for task, _ in run.ci.runs]
    assert verified.count("t00") == verified.count("t01") == 1, "ahead of it: once"
    assert verified.count("t03") == 2, "behind it: built again without its change"
    assert "work/t02.broken" not in run.forge.git("ls-tree", "-r", "--name-only", "origin/main")


async def test_depth_one_verifies_one_task_at_a_time_and_keeps_the_order(
    tmp_path: Path,
) -> None:
    run = queue_of(tmp_path, 3, depth=1)
    await run.run()
    assert run.merged() == ["t00", "t01", "t02"]
    assert [task for task, _ in run.ci.runs] == ["t00", "t01", "t02"]
