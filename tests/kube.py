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
- Objects created without `metadata.namespace` in the body kept none (a real API server sets it
  from the URL); `Emulator` sets it.
- `kubectl get` asks for a Table (`Accept: ...;as=Table`), and lists need their `kind`
  (`AgentTaskList`): kmock served neither, so kubectl failed with "Object 'Kind' is missing".
  `Emulator` renders Tables from the CRDs' additionalPrinterColumns, and typed lists.
  Its discovery gave subresources their resource's categories (`kubectl get factory` then
  failed on "factoryspecs/status") and the plural as the singular name; both are corrected.
- A patch whose body carries `metadata.resourceVersion` is a precondition on a real API server
  (409 Conflict when the object changed since); kmock applied it regardless. `Emulator` checks.
- For Helm (the chart tests): kmock reports Kubernetes 1.26, below the chart's `kubeVersion`;
  its core group's resource list says `groupVersion: /v1`, so Helm's REST mapper found no
  ServiceAccount or Service; and it cannot read protobuf, in which Helm stores its release
  records (the tests keep those in Helm's memory driver). The built-in kinds the chart makes
  (Deployments, RBAC, ...) are declared here, the Prometheus Operator's only on request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
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

from agentfactory.controller import settings
from agentfactory.kube.auth import Connection

if TYPE_CHECKING:
    import ssl
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
        self.log: list[Any] = []
        """Every request served, in order (kmock's own view holds only those in flight)."""
        self.faults: list[Callable[[Any], Exception | None]] = []
        """Fault injection: each request is shown to each; an exception returned is raised
        (answered as the API server would), and the request is not served."""
        self._watches: set[asyncio.Task[Any]] = set()
        self._updates = asyncio.Lock()

    def drop_watches(self) -> int:
        """Cut every open watch stream, as a restarting API server or a load balancer does;
        the number cut."""
        cut = [task for task in self._watches if not task.done()]
        for task in cut:
            task.cancel()
        return len(cut)

    async def _handle(self, request: Any) -> Any:
        self.log.append(request)
        watch = request.params.get("watch") in ("true", "1")
        handler = asyncio.current_task()
        if watch and handler is not None:
            self._watches.add(handler)
        try:
            for fault in self.faults:
                error = fault(request)
                if error is not None:
                    raise error
            return await self._serve(request)
        finally:
            if handler is not None:
                self._watches.discard(handler)
            # kmock matches each request against every request it ever served to find its
            # reaction: 0.07 ms per request in the history, so a run of 1,000 requests spent
            # 70 ms on each. Served requests leave that view (`log` keeps them all).
            for index, served in enumerate(self._requests):
                if served is request:
                    del self._requests[index]
                    break

    async def _serve(self, request: Any) -> Any:
        if request.action in (kmock.action.LIST, kmock.action.FETCH) and not request.subresource:
            listing = self._listing(request)
            if listing is not None:
                return listing
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
            if request.namespace:  # the URL names it; the body need not
                meta.setdefault("namespace", request.namespace)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            meta.setdefault("creationTimestamp", now.replace("+00:00", "Z"))
        if request.resource is None or request.action != kmock.action.UPDATE:
            return await self._write(request)
        async with self._updates:  # the check and the write, as one step
            if isinstance(request.data, dict) and request.name is not None:
                expected = (request.data.get("metadata") or {}).get("resourceVersion")
                key = (request.resource, request.namespace, request.name)
                if expected is not None and key in self._objects:
                    current = self._objects[key].raw["metadata"].get("resourceVersion")
                    if str(expected) != str(current):
                        raise kmock.KubernetesError(
                            status=409, reason="Conflict", message=f"the object has been"
                            f" modified (resourceVersion {current}, not {expected})",
                        )  # fmt: skip
            return await self._write(request)

    # kmock finds the object of a single-object request by scanning every object it ever
    # stored (deleted pods and Secrets, every Event): at a thousand tasks that scan was most
    # of the emulator's time. These look it up by its key instead, as kmock stores it.
    async def _stored(self, request: Any, namespace: str | None, name: str | None) -> Any:
        key = (request.resource, namespace, name)
        async with self._lock:
            found = self._objects[key] if key in self._objects else None  # noqa: SIM401 - no get()
        if found is None:
            raise kmock.KubernetesError(status=404, reason="NotFound", message=f"{name} not found")
        return found

    async def _serve_fetch(self, request: Any) -> Any:
        found = await self._stored(request, request.namespace, request.name)
        if found.deleted:
            raise kmock.KubernetesError(status=404, reason="NotFound", message="deleted")
        return found.raw

    async def _serve_create(self, request: Any) -> Any:
        meta = (request.data or {}).get("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        return (await self._stored(request, namespace, request.name or meta.get("name"))).raw

    async def _serve_update(self, request: Any) -> Any:
        return (await self._stored(request, request.namespace, request.name)).last.raw

    async def _serve_delete(self, request: Any) -> Any:
        return (await self._stored(request, request.namespace, request.name)).last.raw

    async def _serve_server_version(self, request: Any) -> Any:
        # kmock reports Kubernetes 1.26, older than the chart's `kubeVersion` allows; Helm
        # refuses to install on it. We emulate a release the chart supports.
        served = dict(await super()._serve_server_version(request))
        served.update(major="1", minor="31", gitVersion="v1.31.0")
        return served

    async def _serve_version(self, request: Any) -> Any:
        # A subresource (`agenttasks/status`) has no short names or categories: kmock copied
        # its resource's, so `kubectl get factory` tried to list "factoryspecs/status".
        served = await super()._serve_version(request)
        # The core group's list said `groupVersion: /v1`; Helm's REST mapper then found no
        # ServiceAccount or Service ("no matches for kind ... in version v1").
        served["groupVersion"] = served["groupVersion"].lstrip("/")
        for entry in served["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], verbs=["get", "patch", "update"])
        return served

    def _listing(self, request: Any) -> aiohttp.web.Response | None:
        """A Table when the client asks for one (`kubectl get` does), with the columns the CRD
        declares; a typed list (`kind: AgentTaskList`) otherwise. kmock serves neither."""
        resource = request.resource
        if resource is None or not resource.plural or request.params.get("watch") in ("true", "1"):
            return None  # discovery, watches: kmock's own
        info = self.resources.get(resource)
        accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
        table = "as=Table" in accept
        if info is None or not info.kind or (request.name is not None and not table):
            return None  # kmock serves a single object as it is
        objs = [obj.raw for (res, ns, name), obj in self.objects.items()
                if res == resource and not obj.deleted
                and (request.namespace is None or ns == request.namespace)
                and (request.name is None or name == request.name)]  # fmt: skip
        if request.name is not None and not objs:
            return None  # kmock's 404
        version = str(max((int(o["metadata"].get("resourceVersion", 0)) for o in objs), default=0))
        if not table:
            api = f"{resource.group}/{resource.version}" if resource.group else resource.version
            return aiohttp.web.json_response({"apiVersion": api, "kind": f"{info.kind}List",
                                              "metadata": {"resourceVersion": version},
                                              "items": objs})  # fmt: skip
        columns = PRINTERS.get((resource.group, resource.version, resource.plural), [AGE])
        return aiohttp.web.json_response({
            "apiVersion": "meta.k8s.io/v1", "kind": "Table",
            "metadata": {"resourceVersion": version},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0,
                 "description": "Name of the object."},
                *({"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                   "description": c.get("description", ""), "priority": c.get("priority", 0)}
                  for c in columns),
            ],
            "rows": [{"cells": [o["metadata"]["name"], *(_cell(o, c) for c in columns)],
                      "object": {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                                 "metadata": o["metadata"]}} for o in objs],
        })  # fmt: skip

    async def _write(self, request: Any) -> Any:
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


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


#: Our CRDs as shipped, read once (every emulator declares them).
SHIPPED: list[dict[str, Any]] = [yaml.safe_load(p.read_text()) for p in sorted(CRDS.glob("*.yaml"))]


def _printers() -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The additionalPrinterColumns of our CRDs, by (group, version, plural)."""
    out = {}
    for crd in SHIPPED:
        for version in crd["spec"]["versions"]:
            key = (crd["spec"]["group"], version["name"], crd["spec"]["names"]["plural"])
            out[key] = list(version.get("additionalPrinterColumns") or [AGE])
    return out


PRINTERS = _printers()


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    """A column's value as the API server renders it (simple `.a.b` paths; dates as ages)."""
    value: Any = obj
    for part in column["jsonPath"].lstrip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is not None and column["type"] == "date":
        seconds = (datetime.now(UTC) - datetime.fromisoformat(str(value))).total_seconds()
        value = f"{int(seconds)}s" if seconds < 120 else f"{int(seconds // 60)}m"
    return value


VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
BACKBONE = {
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "v1/namespaces": ("Namespace", False),
    "v1/events": ("Event", True),
    "v1/pods": ("Pod", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/secrets": ("Secret", True),
    # kopf's peering resources (kopf ships their CRDs; replicas meet in these objects).
    "kopf.dev/v1/clusterkopfpeerings": ("ClusterKopfPeering", False),
    "kopf.dev/v1/kopfpeerings": ("KopfPeering", True),
}


# Built-in kinds the operator creates per factory and the Helm chart installs: Helm maps each
# kind of its manifests through discovery and refuses ones the server does not serve.
BUILTIN = {
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/services": ("Service", True),
    "apps/v1/deployments": ("Deployment", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
}
# The Prometheus Operator's kinds, served only where a test installs "its CRDs".
MONITORING = {
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True),
    "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True),
}


def serve(emulator: kmock.KubernetesEmulator, kinds: dict[str, tuple[str, bool]]) -> None:
    """Declare *kinds* ("group/version/plural": (kind, namespaced)) in the discovery."""
    for key, (kind, namespaced) in kinds.items():
        info = emulator.resources[key]
        info.kind, info.namespaced, info.verbs = kind, namespaced, VERBS


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """Declare the backbone, the built-in kinds and our CRDs in *emulator*'s discovery."""
    serve(emulator, {**BACKBONE, **BUILTIN})
    for crd in SHIPPED:
        names, version = crd["spec"]["names"], crd["spec"]["versions"][0]["name"]
        info = emulator.resources[f"{crd['spec']['group']}/{version}/{names['plural']}"]
        info.kind, info.namespaced, info.verbs = names["kind"], True, VERBS
        info.singular = names["singular"]
        info.shortnames = set(names["shortNames"])
        info.categories = set(names["categories"])
        info.subresources = {"status"}


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig at *path* for the emulator at *url* (kubectl's and Helm's)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
        f"clusters: [{{name: emulator, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: user, user: {token: unused}}]\n"
        "contexts: [{name: emulator, context: {cluster: emulator, user: user,"
        " namespace: default}}]\n"
    )
    return path


def secret_doc(name: str, data: dict[str, str]) -> dict[str, Any]:
    """An Opaque Secret holding *data* (plain strings, encoded as the API stores them)."""
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


@dataclass(frozen=True)
class Api:
    """Where an API server is and who asks it: the emulator's plain URL, or a real server's
    HTTPS URL with a TLS context (the CA, and a client certificate) and a bearer token."""

    url: str
    ssl: ssl.SSLContext | None = None
    token: str | None = None

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        connector = aiohttp.TCPConnector(ssl=self.ssl) if self.ssl is not None else None
        return aiohttp.ClientSession(headers=headers, connector=connector, **kwargs)


async def wait_for(
    api: str | Api, collection: str, name: str, predicate: Callable[[dict[str, Any]], bool],
    within: float = 30,
) -> dict[str, Any]:  # fmt: skip
    """The object *name* once *predicate* holds, awaited on a watch stream (no polling):
    the stream is opened before the current state is read, so no change slips between. The
    watch selects the one object by name (which is all a kubelet may watch of a Secret)."""
    api = api if isinstance(api, Api) else Api(api)

    async def watch_again() -> dict[str, Any]:
        while True:  # a cut stream is opened again, as any watching client does
            with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                return await watch()

    async def watch() -> dict[str, Any]:
        params = {"watch": "true", "fieldSelector": f"metadata.name={name}"}
        async with (
            api.session() as session,
            session.get(f"{api.url}{collection}", params=params,
                        timeout=aiohttp.ClientTimeout(total=None)) as stream,
        ):  # fmt: skip
            if stream.status == 429:  # a kind just served, its storage not ready: as it says
                await asyncio.sleep(float(stream.headers.get("Retry-After", "1")))
                raise aiohttp.ClientConnectionError("retry after 429")
            stream.raise_for_status()
            async with session.get(f"{api.url}{collection}/{name}") as current:
                obj = await current.json() if current.status == 200 else None
            if obj is not None and predicate(obj):
                return dict(obj)
            async for line in stream.content:
                obj = json.loads(line).get("object", {})
                if obj.get("metadata", {}).get("name") == name and predicate(obj):
                    return dict(obj)
        raise AssertionError(f"the watch on {collection} ended before {name} matched")

    return await asyncio.wait_for(watch_again(), within)


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
    url: str | Connection, namespaces: list[str] | None = None, **memo: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """kopf for real (all handlers of the package) against the emulator at *url*, or a real
    API server through a *connection*; cluster-wide unless *namespaces* are named."""
    settings.use(url if isinstance(url, Connection) else Connection(server=url))
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


@asynccontextmanager
async def emulated() -> AsyncIterator[tuple[Emulator, str]]:
    """The emulator, declared and served on localhost: (emulator, base URL)."""
    async with Emulator() as emulator, Server(emulator) as server:
        declare(emulator)
        yield emulator, str(server.url).rstrip("/")
