"""Operator settings, owned explicitly (persistence, posting, watching, peering) in one startup
handler, and the API client every handler shares through kopf's memo."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from agentfactory import API_VERSION, GROUP, __version__
from agentfactory.controller.leadership import Leadership
from agentfactory.kube.auth import Connection, connect
from agentfactory.kube.client import Kube, KubeError, http_session, path_of

PREFIX = "agentfactory.dev"
STOP_SECONDS = 20
PEERING_API = "kopf.dev/v1"
PLURALS = ("factoryspecs", "agenttasks")
log = logging.getLogger(__name__)
_connection: list[Connection] = []


def use(connection: Connection) -> None:
    """Talk to the API server through *connection* (kopf's watches and the operator's own
    requests alike); by default, the one `agentfactory.kube.auth.connect` finds."""
    _connection[:] = [connection]


def connection() -> Connection:
    if not _connection:
        _connection.append(connect())
    return _connection[0]


@kopf.on.login(id="connection")
async def login(memo: kopf.Memo, **_: Any) -> kopf.AiohttpSession:
    """kopf's client: the same server, CA, client certificate and token as ours (asked again
    on a 401, so a rotated token is picked up). It is our session, not one kopf builds, so that
    its watches cut short at shutdown leave no socket open (`http_session`); and the same one
    while the token holds, because kopf tells a credential that failed from a new one by
    equality, and would otherwise log in again without end on a token the server refuses."""
    found = connection()
    authorization = found.authorization()
    sessions: dict[str | None, kopf.AiohttpSession] = memo.setdefault("logins", {})
    if authorization not in sessions:
        headers = {"User-Agent": f"kopf agentfactory/{__version__}"}
        if authorization:
            headers["Authorization"] = authorization
        sessions[authorization] = kopf.AiohttpSession(
            server=found.server, default_namespace=found.namespace,
            aiohttp_session=http_session(found.ssl_context(), headers=headers),
        )  # fmt: skip
    return sessions[authorization]


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
    settings.peering.lifetime = int(memo.get("peering_lifetime", settings.peering.lifetime))
    # kopf would watch every CRD in the cluster to notice ours arriving later. That needs a
    # cluster-wide grant a namespaced install does not have (kopf then only warns and never
    # notices), so our CRDs are checked once here instead, and their absence stops the start.
    settings.scanning.disabled = True
    found = connection()
    log.info("API server %s, credentials from %s", found.server, found.source)
    memo.kube = await Kube(connection=found).__aenter__()
    await ensure_crds(memo.kube)
    memo.leaderships = {}
    memo.peering = None
    if not settings.peering.standalone:
        namespaces = memo.get("namespaces") or []
        await ensure_peering(memo.kube, settings.peering.name, namespaces)
        memo.peering = (settings.peering.name, bool(namespaces), settings.peering.priority)


def leadership(memo: kopf.Memo, namespace: str) -> Leadership:
    """The namespace's leadership check: one per peering object, shared by the workers that
    meet in it (so the object is read once per interval, not once per namespace)."""
    if memo.get("peering") is None:
        return Leadership.standalone()
    name, namespaced, priority = memo.peering
    plural = "kopfpeerings" if namespaced else "clusterkopfpeerings"
    path = path_of(PEERING_API, plural, namespace if namespaced else None, name)
    if path not in memo.leaderships:
        every = min(5.0, float(memo.get("peering_lifetime", 60)) / 4)
        memo.leaderships[path] = Leadership(memo.kube, path, memo.identity, priority, every)
    found: Leadership = memo.leaderships[path]
    return found


async def ensure_crds(kube: Kube) -> None:
    """Stop the start when our kinds are not served: kopf would run and watch nothing."""
    served = await kube.get(f"/apis/{API_VERSION}") or {}
    names = {str(resource.get("name")) for resource in served.get("resources") or []}
    missing = [f"{plural}.{GROUP}" for plural in PLURALS if plural not in names]
    if missing:
        raise kopf.PermanentError(
            f"the CRDs {' and '.join(missing)} ({API_VERSION}) are not installed: install the"
            " chart with crds.enabled=true, or kubectl apply -f crds/ from the project"
        )


async def ensure_peering(kube: Kube, name: str, namespaces: list[str]) -> None:
    """Create the peering object(s) replicas meet in. kopf treats a missing object as "no
    peers": every replica would then act, so it has to exist before any of them starts."""
    kind, plural = ("KopfPeering", "kopfpeerings") if namespaces else (
        "ClusterKopfPeering", "clusterkopfpeerings")  # fmt: skip
    where: list[str | None] = list(namespaces) or [None]
    for namespace in where:
        body = {"apiVersion": PEERING_API, "kind": kind, "metadata": {"name": name}}
        try:
            await kube.create(path_of(PEERING_API, plural, namespace), body)
        except KubeError as exc:
            if exc.status == 404:
                raise kopf.PermanentError(
                    f"the peering CRD {plural}.kopf.dev is not installed: install the chart's"
                    " CRDs, or run a single replica with --standalone"
                ) from exc
            if exc.status != 409:  # 409: another replica made it first
                raise
        log.info("peering %r %s ready", name, f"in {namespace}" if namespace else "cluster-wide")


@kopf.on.cleanup(id="stop")
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop the workers (if any run), then close the API client they use (in that order: a
    pass cut off by a closed client would fail halfway and retry until killed)."""
    workers: dict[str, tuple[Any, asyncio.Task[None]]] = memo.get("workers", {})
    for worker, _task in workers.values():
        worker.stop()
    tasks = [task for _, task in workers.values()]
    if tasks:
        _done, late = await asyncio.wait(tasks, timeout=STOP_SECONDS)
        for task in late:  # a pass stuck in a slow call: cut it off
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    kube = memo.get("kube")
    if kube is not None:
        await kube.__aexit__(None, None, None)
