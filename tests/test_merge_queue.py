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
    assert verified.count("t03") <= 2, "behind it: at most once more"
    last_t03 = [head for task, head in run.ci.runs if task == "t03"][-1]
    files = run.forge.git("ls-tree", "-r", "--name-only", last_t03)
    assert "work/t02.broken" not in files, "behind it: built again without its change"
    assert "work/t02.broken" not in run.forge.git("ls-tree", "-r", "--name-only", "origin/main")


async def test_depth_one_verifies_one_task_at_a_time_and_keeps_the_order(
    tmp_path: Path,
) -> None:
    run = queue_of(tmp_path, 3, depth=1)
    await run.run()
    assert run.merged() == ["t00", "t01", "t02"]
    assert [task for task, _ in run.ci.runs] == ["t00", "t01", "t02"]


async def test_a_batch_runs_ci_once_on_its_last_task_and_all_of_it_lands(tmp_path: Path) -> None:
    run = queue_of(tmp_path, 9, depth=2, batch=4)
    await run.run()
    names = [f"t{i:02d}" for i in range(9)]
    assert run.merged() == names, "\n".join(run.said.lines)
    # t00 joined verified on the old base, so its merge found the base moved and it was
    # verified alone; behind it come two batches of four, each verified by its last task.
    assert [task for task, _ in run.ci.runs] == ["t00", "t04", "t08"]
    verified_by = {n: run.status(n).ci.verified_by for n in names}
    assert verified_by == {"t00": None, "t01": "t04", "t02": "t04", "t03": "t04", "t04": None,
                           "t05": "t08", "t06": "t08", "t07": "t08", "t08": None}  # fmt: skip
    last = run.ci.runs[-1][1]
    assert run.main_tree() == run.forge.git("rev-parse", f"{last}^{{tree}}")


async def test_a_red_batch_is_bisected_and_every_green_task_still_lands(tmp_path: Path) -> None:
    run = queue_of(tmp_path, 8, red=(5,), depth=2, batch=4)
    await run.run()
    assert run.merged() == ["t00", "t01", "t02", "t03", "t04", "t06", "t07"], "\n".join(
        run.said.lines
    )
    red = run.status("t05")
    assert red.phase == Phase.IMPLEMENTING and red.queue is None
    assert "broken by work/t05.broken" in red.feedback
    splits = [n for n in run.store.records
              if any(h.reason == "BatchSplit" for h in run.status(n).history)]  # fmt: skip
    assert splits, "the red batch was bisected"
    assert len(run.ci.runs) < 8, f"fewer runs than one per task: {run.ci.runs}"
    assert "work/t05.broken" not in run.forge.git("ls-tree", "-r", "--name-only", "origin/main")


async def test_depth_one_with_batches_verifies_one_batch_at_a_time(tmp_path: Path) -> None:
    run = queue_of(tmp_path, 5, depth=1, batch=4)
    await run.run()
    assert run.merged() == [f"t{i:02d}" for i in range(5)], "\n".join(run.said.lines)
    assert [task for task, _ in run.ci.runs] == ["t00", "t04"], (
        "the batch behind t00 was built while t00's run went, and ran once that run was free"
    )
