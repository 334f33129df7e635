"""Operator settings, owned explicitly (persistence, posting, watching) in one startup
handler, and the API client every handler shares through kopf's memo."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from agentfactory.kube.client import Kube

PREFIX = "agentfactory.dev"


@kopf.on.startup(id="settings")
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    server = memo.get("kube_server")
    kube = Kube(server=server) if server else Kube.in_cluster()
    memo.kube = await kube.__aenter__()


@kopf.on.cleanup(id="close-client")
async def close(memo: kopf.Memo, **_: Any) -> None:
    kube = memo.get("kube")
    if kube is not None:
        await kube.__aexit__(None, None, None)
