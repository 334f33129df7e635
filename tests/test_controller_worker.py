"""The namespace worker against the emulator, without kopf: what keeps two writers (a standby
replica's last pass, a view behind the API) from doubling a transition."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentfactory.controller.view import View
from agentfactory.controller.worker import Worker
from agentfactory.kube.client import Kube, path_of
from tests.kube import emulated, wait_for
from tests.scripts import factory_doc, task_doc

if TYPE_CHECKING:
    from pathlib import Path

NS = "shop"
API = "agentfactory.dev/v1alpha1"


async def test_a_worker_on_a_stale_view_loses_its_writes_instead_of_doubling_them(
    tmp_path: Path, remote: Path
) -> None:
    async with emulated() as (_, url), Kube(server=url) as kube:
        await kube.create(path_of(API, "factoryspecs", NS), factory_doc(remote))
        task = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
        task["metadata"]["namespace"] = NS
        await kube.create(path_of(API, "agenttasks", NS), task)
        first = Worker(NS, kube, View(), tmp_path / "first")
        second = Worker(NS, kube, View(), tmp_path / "second")
        await first.refresh()
        await second.refresh()  # both saw the task Pending
        while await first.step():  # as far as it goes without a kubelet: the plan pod runs
            pass
        moved = await second.step()  # decides from Pending; the API says otherwise
        after = await kube.get(path_of(API, "agenttasks", NS, "fix-cart")) or {}
        assert [h["to"] for h in after["status"]["history"]] == ["Queued", "Planning"]
        assert after["status"]["phase"] == "Planning"
        assert not moved, "the stale observations were decided again and ignored"
        pods = await kube.list(path_of("v1", "pods", NS))
        assert [p["metadata"]["name"] for p in pods] == ["fix-cart-plan-1"]
        events = await kube.list(path_of("v1", "events", NS))
        assert len(events) == 2, "one Event per transition, none for a refused write"


async def test_waiting_tasks_say_why_and_the_factory_counts_follow_its_tasks(
    tmp_path: Path, remote: Path
) -> None:
    async with emulated() as (_, url), Kube(server=url) as kube:
        await kube.create(path_of(API, "factoryspecs", NS), factory_doc(remote))
        for doc in (
            task_doc("first", "One.", ["shop/cart.py"]),
            task_doc("second", "Two.", ["shop/pricing.py"], dependsOn=["first"]),
        ):
            await kube.create(path_of(API, "agenttasks", NS), doc)  # fmt: skip
        worker = Worker(NS, kube, View(), tmp_path / "worker")
        await worker.refresh()
        while await worker.step():
            pass
        second = await kube.get(path_of(API, "agenttasks", NS, "second")) or {}
        assert second["status"]["phase"] == "Pending"
        assert "first" in second["status"]["message"]
        assert not second["status"].get("history"), "a waiting message is not a transition"
        factory = await kube.get(path_of(API, "factoryspecs", NS, "shop")) or {}
        counts = factory["status"]["tasks"]
        assert (counts["total"], counts["active"]) == (2, 1)
        assert counts["byPhase"] == {"Planning": 1, "Pending": 1}
        assert factory["status"]["mergeQueue"] == []


async def test_a_stopped_worker_finishes_its_pass_and_returns(tmp_path: Path, remote: Path) -> None:
    async with emulated() as (_, url), Kube(server=url) as kube:
        await kube.create(path_of(API, "factoryspecs", NS), factory_doc(remote))
        task = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
        await kube.create(path_of(API, "agenttasks", NS), task)
        worker = Worker(NS, kube, View(), tmp_path / "worker", resync_seconds=3600)
        running = asyncio.create_task(worker.run())
        await wait_for(url, path_of(API, "agenttasks", NS), "fix-cart",
                       lambda o: (o.get("status") or {}).get("phase") == "Planning")  # fmt: skip
        worker.stop()
        await asyncio.wait_for(running, 10)  # returns by itself: no cancellation needed
        assert running.exception() is None
