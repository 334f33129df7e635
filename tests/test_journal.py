"""The operator's journal on its own: a webhook delivery still under way when the operator
stops is cut, and its connection closed, instead of outliving the event loop (a task
destroyed mid-request leaves its socket open)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp.web
from testbed.apiserver import free_port

from agentfactory.controller.journal import KubeJournal
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.phases import Phase
from agentfactory.core.step import Decision
from agentfactory.core.task import AgentTaskStatus
from agentfactory.core.transitions import Trigger
from agentfactory.loop.ports import Record

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@dataclass
class OnCall:
    """The credentials collaborator, reduced to the one Secret the webhook names."""

    url: str

    async def secret(self, name: str, factory: str, field: str) -> dict[str, str]:
        del name, factory, field
        return {"url": self.url}


@contextlib.asynccontextmanager
async def silent_receiver() -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """A receiver that takes the request and never answers: its URL, an event set when a
    request arrived, and one set when the caller hung up."""
    arrived, hung_up = asyncio.Event(), asyncio.Event()

    async def hook(request: aiohttp.web.Request) -> aiohttp.web.Response:
        arrived.set()
        try:
            await asyncio.Event().wait()
        finally:
            hung_up.set()
        raise AssertionError("never answers")

    runner = aiohttp.web.AppRunner(aiohttp.web.Application(), handler_cancellation=True)
    runner.app.router.add_post("/hook", hook)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", arrived, hung_up
    finally:
        await runner.cleanup()


async def test_stopping_cuts_a_delivery_under_way_and_closes_its_connection() -> None:
    factory = FactorySpecSpec.model_validate({
        "repository": {"url": "https://example.com/r.git"},
        "checks": [{"name": "test", "command": "true"}],
        "escalation": {"notify": {"webhookSecretRef": {"name": "on-call", "key": "url"}}},
    })  # fmt: skip
    waiting = AgentTaskStatus(phase=Phase.AWAITING_APPROVAL, message="a migration")
    decision = Decision(waiting, transitions=[(Phase.CODE_REVIEW, Trigger.APPROVAL_REQUIRED,
                                               Phase.AWAITING_APPROVAL)])  # fmt: skip
    raw: dict[str, Any] = {"metadata": {"name": "orders", "uid": "u"}}
    record = Record("orders", "shop", None, AgentTaskStatus(), raw=raw)
    async with silent_receiver() as (url, arrived, hung_up):
        journal = KubeJournal("ns", kube=None, credentials=OnCall(url))  # type: ignore[arg-type]
        await journal.call_a_person(record, factory, decision, observation=None)  # type: ignore[arg-type]
        await arrived.wait()
        await journal.close()
        await hung_up.wait()  # the receiver saw the connection go
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("notify-")]
