"""kmock's KubernetesEmulator prepared for kopf, and what we had to add to it.

What kmock 0.8 lacked, and what this module adds (see DESIGN.md section 7):
- kopf waits for a "backbone" of core resources before it starts any watch: without
  CustomResourceDefinitions, Namespaces and Events declared in the emulator's discovery, kopf
  starts, logs in, and silently never watches anything. They are declared here.
- Resources must be declared with their verbs (`list`, `watch`, ...): otherwise kopf logs
  "Non-watchable resources will not be served" and skips them.
- Our two CRDs are declared from the generated files in `crds/`, so the emulator serves
  exactly the kinds, short names and categories we ship.
- kopf's patches test `metadata.resourceVersion` (optimistic concurrency), and kmock keeps
  none: every handler's status patch failed with a 500 until a timer's patch happened to land
  (10 s later). `Emulator` issues a resourceVersion on create and a new one on every update,
  and answers a failed JSON-patch `test` with 422 Unprocessable Entity as a real API server
  does (kopf then retries on its next cycle; on a 500 it retried the stale patch with backoff).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import aiohttp.web
import jsonpatch
import kmock
import kopf
import yaml
from kmock._internal.apps import Server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

CRDS = Path(__file__).parent.parent / "crds"
_VERSIONS = itertools.count(1)


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersions, uids, creation times and pod logs, as a real
    API server keeps them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logs: dict[tuple[str, str, str], str] = {}
        """Container logs the test kubelet wrote: (namespace, pod, container) -> text."""

    async def _handle(self, request: Any) -> Any:
        if request.subresource == "log" and request.action == kmock.action.FETCH:
            container = request.params.get("container", "")
            text = self.logs.get((request.namespace, request.name, container))
            if text is None:
                return aiohttp.web.json_response(
                    {"kind": "Status", "code": 404, "message": "no log"}, status=404
                )
            return aiohttp.web.Response(text=text, content_type="text/plain")
        creating = request.resource is not None and request.action == kmock.action.CREATE
        if creating and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            now = datetime.now(UTC).isoformat(timespec="seconds")
            meta.setdefault("creationTimestamp", now.replace("+00:00", "Z"))
        if request.resource is not None and request.action in (
            kmock.action.CREATE,
            kmock.action.UPDATE,
        ):
            version = str(next(_VERSIONS))
            if isinstance(request.data, dict):
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            elif isinstance(request.data, list):  # a JSON patch: its tests run first
                request.data.append(
                    {"op": "add", "path": "/metadata/resourceVersion", "value": version}
                )
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise kmock.KubernetesError(
                status=422, reason="Invalid", message=f"the object has been modified: {exc}"
            ) from None


VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
BACKBONE = {
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "v1/namespaces": ("Namespace", False),
    "v1/events": ("Event", True),
    "v1/pods": ("Pod", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/secrets": ("Secret", True),
}


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """Declare the backbone and our CRDs in *emulator*'s discovery."""
    for key, (kind, namespaced) in BACKBONE.items():
        info = emulator.resources[key]
        info.kind, info.namespaced, info.verbs = kind, namespaced, VERBS
    for path in sorted(CRDS.glob("*.yaml")):
        crd: dict[str, Any] = yaml.safe_load(path.read_text())
        names, version = crd["spec"]["names"], crd["spec"]["versions"][0]["name"]
        info = emulator.resources[f"{crd['spec']['group']}/{version}/{names['plural']}"]
        info.kind, info.namespaced, info.verbs = names["kind"], True, VERBS
        info.shortnames = set(names["shortNames"])
        info.categories = set(names["categories"])
        info.subresources = {"status"}


async def wait_for(
    url: str, collection: str, name: str, predicate: Callable[[dict[str, Any]], bool],
    within: float = 30,
) -> dict[str, Any]:  # fmt: skip
    """The object *name* once *predicate* holds, awaited on a watch stream (no polling):
    the stream is opened before the current state is read, so no change slips between."""

    async def watch() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            stream = await session.get(f"{url}{collection}", params={"watch": "true"},
                                       timeout=aiohttp.ClientTimeout(total=None))  # fmt: skip
            current = await session.get(f"{url}{collection}/{name}")
            if current.status == 200:
                obj = await current.json()
                if predicate(obj):
                    stream.close()
                    return dict(obj)
            async for line in stream.content:
                event = json.loads(line)
                obj = event.get("object", {})
                if obj.get("metadata", {}).get("name") == name and predicate(obj):
                    stream.close()
                    return dict(obj)
        raise AssertionError(f"the watch on {collection} ended before {name} matched")

    return await asyncio.wait_for(watch(), within)


_URL: dict[str, str] = {}


@kopf.on.login(id="test-login")
def login(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=_URL["server"], insecure=True)


@asynccontextmanager
async def running_operator(url: str, **memo: Any) -> AsyncIterator[asyncio.Task[None]]:
    """kopf for real (all handlers of the package) against the emulator at *url*."""
    _URL["server"] = url
    stop = asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        clusterwide=True, standalone=True, stop_flag=stop,
        memo=kopf.Memo(kube_server=url, **memo),
    ))  # fmt: skip
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


@asynccontextmanager
async def emulated() -> AsyncIterator[tuple[Emulator, str]]:
    """The emulator, declared and served on localhost: (emulator, base URL)."""
    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        yield emulator, str(server.url).rstrip("/")
