"""Talking to the API server in tests: where it is and who asks (`Api`), watching for an
object to reach a state or to go (no polling), Secrets as the API stores them, and kopf for
real in this process (`running_operator`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import kopf

from agentfactory.controller import settings
from agentfactory.kube.client import close_session, http_session

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable

    from agentfactory.kube.auth import Connection


def secret_doc(name: str, data: dict[str, str], factory: str | None) -> dict[str, Any]:
    """An Opaque Secret holding *data* (plain strings, encoded as the API stores them), that
    FactorySpec *factory* may use (None: no factory)."""
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    labels = {"agentfactory.dev/factory": factory} if factory else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels},
            "data": encoded}  # fmt: skip


class NamespacePaths:
    """The REST paths of a test's namespace, for the dataclasses that hold one (`ns`)."""

    ns: str

    @property
    def api_path(self) -> str:
        return f"/apis/agentfactory.dev/v1alpha1/namespaces/{self.ns}"

    @property
    def tasks_path(self) -> str:
        return f"{self.api_path}/agenttasks"

    @property
    def pods(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods"

    @property
    def secrets(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/secrets"

    @property
    def events(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/events"

    @property
    def configmaps(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/configmaps"


@dataclass(frozen=True)
class Api:
    """Where the API server is and who asks it: its HTTPS URL, a TLS context (the CA, and a
    client certificate) and a bearer token."""

    url: str
    ssl: ssl.SSLContext | None = None
    token: str | None = None

    @asynccontextmanager
    async def session(self, **kwargs: Any) -> AsyncIterator[aiohttp.ClientSession]:
        """A client of the API server, its TLS connections aborted when it closes."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        http = http_session(self.ssl, headers=headers, **kwargs)
        try:
            yield http
        finally:
            await close_session(http)


async def wait_for(
    api: Api, collection: str, name: str, predicate: Callable[[dict[str, Any]], bool],
    within: float = 30, field: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The object *name* once *predicate* holds, awaited on a watch stream (no polling):
    the stream is opened before the current state is read, so no change slips between. The
    watch selects the one object by name (which is all a kubelet may list or watch of a
    Secret), or, with a *field* selector, the first object it selects that matches."""

    async def watch_again() -> dict[str, Any]:
        while True:  # a cut stream is opened again, as any watching client does
            with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                return await watch()

    selector = field or f"metadata.name={name}"

    last: list[dict[str, Any]] = []  # what the object was when the wait ran out

    def matches(obj: dict[str, Any]) -> bool:
        if field is None and obj.get("metadata", {}).get("name") != name:
            return False
        last[:] = [obj]
        return bool(predicate(obj))

    async def watch() -> dict[str, Any]:
        params = {"watch": "true", "fieldSelector": selector}
        async with (
            api.session() as session,
            session.get(f"{api.url}{collection}", params=params,
                        timeout=aiohttp.ClientTimeout(total=None)) as stream,
        ):  # fmt: skip
            if stream.status == 429:  # a kind just served, its storage not ready: as it says
                await asyncio.sleep(float(stream.headers.get("Retry-After", "1")))
                raise aiohttp.ClientConnectionError("retry after 429")
            stream.raise_for_status()
            if field is None:  # the one object, by name
                async with session.get(f"{api.url}{collection}/{name}") as current:
                    found = [await current.json()] if current.status == 200 else []
            else:
                async with session.get(f"{api.url}{collection}",
                                       params={"fieldSelector": field}) as current:  # fmt: skip
                    found = (await current.json()).get("items", [])
            for obj in found:
                if matches(obj):
                    return dict(obj)
            async for line in stream.content:
                obj = json.loads(line).get("object", {})
                if matches(obj):
                    return dict(obj)
        raise AssertionError(f"the watch on {collection} ended before {name} matched")

    try:
        return await asyncio.wait_for(watch_again(), within)
    except TimeoutError:
        seen = json.dumps(last[0].get("status"), indent=1)[-4000:] if last else "never seen"
        raise TimeoutError(f"{collection}/{name} did not match within {within} s; "
                             f"its status last:\n{seen}") from None  # fmt: skip


async def wait_gone(api: Api, collection: str, name: str, within: float = 60) -> None:
    """Return once the object *name* no longer exists, awaited on a watch (no polling)."""

    async def gone() -> None:
        params = {"watch": "true", "fieldSelector": f"metadata.name={name}"}
        async with (
            api.session() as session,
            session.get(f"{api.url}{collection}", params=params,
                        timeout=aiohttp.ClientTimeout(total=None)) as stream,
        ):  # fmt: skip
            stream.raise_for_status()
            async with session.get(f"{api.url}{collection}/{name}") as current:
                if current.status == 404:
                    return
            async for line in stream.content:
                if json.loads(line)["type"] == "DELETED":
                    return
        raise AssertionError(f"the watch on {collection} ended before {name} went")

    await asyncio.wait_for(gone(), within)


@asynccontextmanager
async def running_operator(
    connection: Connection, namespaces: list[str] | None = None, **memo: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """kopf for real (all handlers of the package) against the API server of *connection*;
    cluster-wide unless *namespaces* are named."""
    settings.use(connection)
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        clusterwide=not namespaces, namespaces=namespaces or [], standalone=True, stop_flag=stop,
        memo=kopf.Memo(namespaces=namespaces or [], **memo),
    ))  # fmt: skip
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
