"""The operator's own HTTP endpoints: Prometheus metrics on `/metrics` and readiness on
`/readyz` (kopf serves liveness on its own endpoint, see `agentfactory run`)."""

from __future__ import annotations

from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@kopf.on.startup(id="serve-metrics")
async def serve(memo: kopf.Memo, **_: Any) -> None:
    port = memo.get("metrics_port")
    if not port:
        return

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(memo.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok" if memo.get("view") is not None else "starting",
                            status=200 if memo.get("view") is not None else 503)  # fmt: skip

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/readyz", ready)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, memo.get("metrics_host", "0.0.0.0"), int(port)).start()  # noqa: S104 - a pod's port
    memo.metrics_runner = runner


@kopf.on.cleanup(id="stop-metrics")
async def stop(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get("metrics_runner")
    if runner is not None:
        await runner.cleanup()
