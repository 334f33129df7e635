"""A small async Kubernetes client for the operator's own objects (kopf ships none).

Only what the operator does: get, list (by label), create, merge-patch, delete, and read a
pod's log. Label selectors are sent to the server and applied again here, so an API server
that ignored them could not widen a list. Secrets are read by name, never listed, so the
operator's RBAC needs no `list` on secrets. A request the server asks to retry later is
retried as it says.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import TYPE_CHECKING, Any

import aiohttp

from agentfactory import __version__
from agentfactory.core.secret_optin import may_use
from agentfactory.kube.auth import Connection

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence


class SecretRefusedError(Exception):
    """A Secret that does not let the factory asking use it (see core.secret_optin)."""


class KubeError(Exception):
    """An API call failed; carries the status code and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


#: How often a request the server asked to retry later is tried again, and the longest wait.
RETRIES = 5
MAX_RETRY_AFTER = 10.0


def _retry_after(status: int, header: str | None) -> float | None:
    """Seconds to wait before trying again, when the server said so (429, or a 5xx with a
    Retry-After); None otherwise."""
    if header is None or (status != 429 and status < 500):
        return None
    try:
        return min(max(float(header), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _message(body: str) -> str:
    """The server's own words from a Status object (the body as it is otherwise)."""
    try:
        status = json.loads(body)
    except ValueError:
        return body[:500]
    message = status.get("message") if isinstance(status, dict) else None
    return str(message)[:1000] if message else body[:500]


def path_of(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a collection or an object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


def _matches(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    have = obj.get("metadata", {}).get("labels") or {}
    return all(have.get(key) == value for key, value in labels.items())


class Kube:
    """A client of an API server: *server* alone (a `kubectl proxy`), or a *connection* with
    its TLS and credentials (`agentfactory.kube.auth.connect`)."""

    def __init__(self, server: str = "", connection: Connection | None = None) -> None:
        self.connection = connection or Connection(server=server)
        self.server = self.connection.server
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        # Named in the API server's audit log, and apart from kopf's own requests.
        headers = {"User-Agent": f"agentfactory/{__version__}"}
        self._session = http_session(self.connection.ssl_context(), headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await close_session(self._session)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._session is None:
            raise RuntimeError("open the client first: `async with Kube(...) as kube`")
        # Asked per request: the kubelet rotates projected service account tokens, and exec
        # credential plugins hand out tokens that expire.
        authorization = self.connection.authorization()
        if authorization:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": authorization}
        for tries_left in range(RETRIES, -1, -1):
            async with self._session.request(method, self.server + path, **kwargs) as response:
                wait = _retry_after(response.status, response.headers.get("Retry-After"))
                if wait is not None and tries_left:
                    # The server asks for patience (429: priority and fairness, or a watch
                    # cache that is (re)initializing), as client-go honours it.
                    await asyncio.sleep(wait)
                    continue
                if response.status >= 400:
                    raise KubeError(response.status, _message(await response.text()))
                if response.content_type == "application/json":
                    return await response.json()
                return await response.text()
        raise AssertionError("unreachable: the last try returns or raises")

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at *path*, or None when it does not exist."""
        try:
            found: dict[str, Any] = await self._call("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def secret_data(self, namespace: str, name: str, factory: str) -> dict[str, str] | None:
        """A Secret's data, decoded, for *factory* (None when it does not exist;
        SecretRefusedError when it does not let *factory* use it). Read by name only."""
        secret = await self.get(path_of("v1", "secrets", namespace, name))
        if secret is None:
            return None
        if not may_use(secret, factory):
            raise SecretRefusedError(name)
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def list(self, path: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The objects of a collection, filtered by *labels*."""
        params = (
            {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else {}
        )
        data = await self._call("GET", path, params=params)
        return [item for item in data.get("items", []) if _matches(item, labels or {})]

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call("POST", path, json=body)
        return created

    async def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"}
        patched: dict[str, Any] = await self._call("PATCH", path, json=body, headers=headers)
        return patched

    async def json_patch(self, path: str, operations: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch: its `test` operations make it conditional (422 when one fails)."""
        headers = {"Content-Type": "application/json-patch+json"}
        patched: dict[str, Any] = await self._call(
            "PATCH", path, json=[*operations], headers=headers
        )
        return patched

    async def delete(self, path: str) -> None:
        try:
            await self._call("DELETE", path)
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def delete_all(self, collection: str, labels: dict[str, str]) -> None:
        """Delete every object of *collection* that carries *labels*, in one request."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        await self._call("DELETE", collection, params={"labelSelector": selector})

    async def ensure(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create *body*, or bring the existing object's fields in line (idempotent)."""
        name = body["metadata"]["name"]
        existing = await self.get(f"{collection}/{name}")
        if existing is None:
            return await self.create(collection, body)
        changes = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
        return await self.patch(f"{collection}/{name}", changes)

    async def logs(self, namespace: str, pod: str, container: str) -> str:
        text: str = await self._call(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params={"container": container}
        )
        return text


# Python before 3.12.7 (and 3.13.0) keeps the socket of a TLS connection closed while its
# peer has not answered close_notify once the event loop ends: every watch stopped mid-stream.
# aiohttp then aborts such connections itself, at the latest when the session closes.
_LEAKS_TLS_SOCKETS = sys.version_info < (3, 12, 7) or (3, 13, 0) <= sys.version_info < (3, 13, 1)


def http_session(context: ssl.SSLContext | None, **kwargs: Any) -> aiohttp.ClientSession:
    """An HTTP client (TLS with *context*) whose connections, streams cut short included, are
    all closed when it closes; *kwargs* go to `aiohttp.ClientSession`."""
    connector = aiohttp.TCPConnector(ssl=True if context is None else context, limit=0,
                                     enable_cleanup_closed=_LEAKS_TLS_SOCKETS)  # fmt: skip
    return aiohttp.ClientSession(connector=connector, **kwargs)


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close *session*, aborting its TLS connections instead of awaiting each peer's
    close_notify: before Python 3.12.8, a TLS close that a closing event loop cuts short
    leaves its socket open (a ResourceWarning later, in whatever runs then)."""
    if session.connector is not None and not session.closed:
        await session.connector.close(abort_ssl=True)
    await session.close()


async def unreachable(connection: Connection, within: float = 10) -> str | None:
    """Why the API server at *connection* cannot be asked anything, or None if it can: said
    once at start, instead of kopf retrying a refused connection every minute."""
    try:
        async with Kube(connection=connection) as kube:
            await asyncio.wait_for(kube.get("/version"), within)
    except KubeError as exc:
        if exc.status == 401:
            return f"it refused the credentials (401): {exc}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    return None
