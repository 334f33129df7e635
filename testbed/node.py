"""The node half of the test kubelets on a real API server: a Node registered with the
node's own identity (`system:node:<name>`, so the Node authorizer and NodeRestriction hold
it to its own pods, Secrets and ConfigMaps), a Lease renewed as a kubelet's heartbeat, the
pods the scheduler bound to it, pod status written through `pods/status`, graceful deletion
confirmed, and container logs served over HTTPS where the API server's `pods/log` asks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import aiohttp.web

from testbed.apiserver import Credentials, free_port
from testbed.kube import Api

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from testbed.apiserver import ControlPlane

log = logging.getLogger("testbed.node")
LEASE_SECONDS = 40
RENEW_SECONDS = 10.0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def now_micro() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Node:
    """A registered, ready Node; `logs` holds what its containers printed."""

    plane: ControlPlane
    name: str = "node-1"
    namespace: str | None = None
    """The one namespace whose pods this node runs, when set: a test's own. (The scheduler may
    bind a pod an earlier test left behind to any node; this node leaves it alone.)"""
    logs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    api: Api = field(init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _runner: aiohttp.web.AppRunner | None = None
    _port: int = 0

    def __post_init__(self) -> None:
        cert, key = self.plane.ca.issue(f"system:node:{self.name}", groups=("system:nodes",))
        self.identity = Credentials(cert, key)
        self.api = Api(self.plane.url, self.plane.ssl_context(self.identity))

    async def start(self, http: aiohttp.ClientSession) -> None:
        port = await self._serve_logs()
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": {
            "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"}}}  # fmt: skip
        async with http.post(f"{self.api.url}/api/v1/nodes", json=node) as answer:
            if answer.status != 409:  # a node registers again after a restart
                answer.raise_for_status()
        await self.resize(http, "16Gi", port)
        self._spawn(self._heartbeat(http))

    async def resize(self, http: aiohttp.ClientSession, memory: str, port: int = 0) -> None:
        """Report the node's capacity (as a node an autoscaler grew would), and where its
        logs are served."""
        port = port or self._port
        self._port = port
        capacity = {"cpu": "4", "memory": memory, "pods": "500", "ephemeral-storage": "100Gi"}
        status = {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [self._condition("Ready", "True", "KubeletReady"),
                           *(self._condition(c, "False", f"KubeletHas{r}") for c, r in (
                               ("MemoryPressure", "SufficientMemory"),
                               ("DiskPressure", "NoDiskPressure"),
                               ("PIDPressure", "SufficientPID")))],
            "nodeInfo": {"kubeletVersion": "v1.36.3", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "bwrap://test",
                         "kernelVersion": "", "osImage": "", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }}  # fmt: skip
        merge = {"Content-Type": "application/strategic-merge-patch+json"}
        path = f"{self.api.url}/api/v1/nodes/{self.name}/status"
        async with http.patch(path, json=status, headers=merge) as answer:
            answer.raise_for_status()

    @staticmethod
    def _condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {"type": kind, "status": status, "reason": reason, "message": reason,
                "lastHeartbeatTime": now(), "lastTransitionTime": now()}  # fmt: skip

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _heartbeat(self, http: aiohttp.ClientSession) -> None:
        """Renew the node's Lease, as a kubelet does: without it the node lifecycle controller
        marks the node NotReady and taints it."""
        leases = f"{self.api.url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name}, "spec": spec}  # fmt: skip
        merge = {"Content-Type": "application/merge-patch+json"}
        while True:
            renew = {"spec": {"renewTime": now_micro()}}
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.patch(f"{leases}/{self.name}", json=renew,
                                      headers=merge) as answer:  # fmt: skip
                    if answer.status == 404:
                        spec["renewTime"] = renew["spec"]["renewTime"]
                        async with http.post(leases, json=body) as created:
                            created.raise_for_status()
                    elif answer.status >= 400:  # loudly: a lapsed lease makes the node NotReady
                        log.warning("lease renewal: %s %s", answer.status, await answer.text())
            await asyncio.sleep(RENEW_SECONDS)  # a heartbeat's period, not a wait on an event

    # -- pods ------------------------------------------------------------------------------

    async def watch(
        self, http: aiohttp.ClientSession, seen: Callable[[str, dict[str, Any]], None]
    ) -> None:
        """Call *seen* with each event of the pods bound to this node, watching again when the
        stream drops (as a kubelet does; replayed events are the caller's to skip)."""
        selector = f"spec.nodeName={self.name}"
        if self.namespace is not None:
            selector += f",metadata.namespace={self.namespace}"
        params = {"watch": "true", "fieldSelector": selector}
        forever = aiohttp.ClientTimeout(total=None)
        while True:
            try:
                async with http.get(f"{self.api.url}/api/v1/pods", params=params,
                                    timeout=forever) as stream:  # fmt: skip
                    stream.raise_for_status()
                    async for line in stream.content:
                        event = json.loads(line)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            seen(event["type"], event["object"])
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                log.info("the pod watch dropped (%s); watching again", exc)

    async def write_status(
        self, http: aiohttp.ClientSession, pod: dict[str, Any], status: dict[str, Any]
    ) -> None:
        meta = pod["metadata"]
        path = f"{self.api.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        merge = {"Content-Type": "application/strategic-merge-patch+json"}
        async with http.patch(path, json={"status": status}, headers=merge) as answer:
            if answer.status == 404:  # deleted meanwhile
                return
            if answer.status >= 400:
                raise RuntimeError(f"pod status refused: {answer.status} {await answer.text()}")

    async def confirm_deletion(self, http: aiohttp.ClientSession, pod: dict[str, Any]) -> None:
        """The kubelet's last word on a pod being deleted gracefully: its containers are gone,
        so the object may go (grace 0, for this pod's uid only)."""
        meta = pod["metadata"]
        path = f"{self.api.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]}}  # fmt: skip
        async with http.delete(path, json=body) as answer:
            if answer.status not in (200, 404, 409):
                raise RuntimeError(f"pod deletion refused: {answer.status} {await answer.text()}")

    # -- logs ------------------------------------------------------------------------------

    async def _serve_logs(self) -> int:
        """The kubelet's /containerLogs endpoint, which the API server's pods/log proxies."""

        async def container_log(request: aiohttp.web.Request) -> aiohttp.web.Response:
            key = (request.match_info["namespace"], request.match_info["pod"],
                   request.match_info["container"])  # fmt: skip
            text = self.logs.get(key)
            if text is None:
                return aiohttp.web.Response(status=404, text="no such container log")
            return aiohttp.web.Response(text=text, content_type="text/plain")

        app = aiohttp.web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_log)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(*map(str, self.plane.ca.issue(
            "kubelet-serving", server=True, hosts=("127.0.0.1", self.name))))  # fmt: skip
        port = free_port()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=serving).start()
        return port
