"""A test kubelet: runs each pod bound to its node on the real API server as local processes,
in bubblewrap, with the pod's own filesystem layout, environment and deadline, and writes the
pod's status (through `pods/status`) and logs (served where `pods/log` asks) as a kubelet
would.

What it does like a kubelet: waits for the pod's ConfigMaps and Secrets before starting
(ContainerCreating), materialises emptyDir, projected ConfigMap and Secret volumes at their
mount paths (read-only where the pod says so), runs init containers then the main
container with the container's env (`valueFrom.secretKeyRef` resolved), a read-only root
filesystem, and `activeDeadlineSeconds` (Failed, reason DeadlineExceeded); records each
container's termination message from its `terminationMessagePath` and its log; and kills a
pod's processes when the pod is deleted. Each container runs as its `runAsUser` and
`runAsGroup` (in a user namespace, so without capabilities), with its command as PID 1 and
its environment as the process's own (never on a command line, which any process in the
pod could read), as a container runtime starts it. What it does not: images (the host's
programs are the image), resource limits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import sys
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from agentfactory.local.executor import runtime_paths
from testbed.apiserver import ApiError
from testbed.kube import wait_for
from testbed.node import Node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

    from testbed.apiserver import ControlPlane

log = logging.getLogger("testbed.kubelet")
T = TypeVar("T")
# /run is the pod's own (a kubelet mounts service account tokens under /var/run, its link).
SKIP_ROOT = {"tmp", "proc", "dev", "sys", "run", "workspace", "factory"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ContainerConfigError(Exception):
    """What a kubelet reports as CreateContainerConfigError: a container's configuration
    names what is not there (a Secret's key)."""


@dataclass
class Kubelet:
    """Runs the pods bound to its *node* on the real API server; `started` lists every pod it
    ran, in order."""

    node: Node
    root: Path
    readable: list[str] = field(default_factory=list)
    """Host paths the pods may read (a local bare repository standing in for a remote)."""
    writable: list[str] = field(default_factory=list)
    """Host paths the pods may write (the bare remote, for an operator that pushes to it)."""
    entrypoints: dict[str, list[str]] = field(default_factory=dict)
    """Image (without its tag) -> its ENTRYPOINT, for containers that give only args."""
    unpullable: set[str] = field(default_factory=set)
    """Images the registry does not have: their pods wait in ImagePullBackOff."""
    started: list[str] = field(default_factory=list)
    mounted: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    """The files of each volume it mounted, by (namespace, pod, volume)."""
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("the test kubelet needs bubblewrap: apt-get install bubblewrap")
        self.bwrap = bwrap
        self.api = self.node.api
        self.url = self.api.url
        self._deleting: set[str] = set()
        self._killed: dict[str, asyncio.Event] = {}
        self._jobs: set[asyncio.Future[None]] = set()

    @property
    def logs(self) -> dict[tuple[str, str, str], str]:
        """Container logs by (namespace, pod, container), where `pods/log` reads them."""
        return self.node.logs

    async def run(self) -> None:
        """Register the node and watch its pods (again when the watch drops; the replayed
        ADDED events of pods already handled are skipped)."""
        async with self.api.session() as http:
            await self.node.start(http)
            await self.node.watch(http, lambda kind, pod: self._seen(http, kind, pod))

    def _seen(self, http: aiohttp.ClientSession, kind: str, pod: dict[str, Any]) -> None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        if kind == "DELETED":
            self._spawn(self._kill(key))
        elif pod["metadata"].get("deletionTimestamp"):
            if key not in self._deleting:  # graceful deletion: stop it, then let it go
                self._deleting.add(key)
                self._spawn(self._delete(http, key, pod))
        elif (
            kind == "ADDED"
            and key not in self._running
            and (pod.get("status") or {}).get("phase") in (None, "Pending")
        ):
            self._running[key] = asyncio.create_task(self._run_or_fail(http, pod))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        job = asyncio.ensure_future(work)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _delete(self, http: aiohttp.ClientSession, key: str, pod: dict[str, Any]) -> None:
        await self._kill(key)
        await self.node.confirm_deletion(http, pod)

    async def stop(self) -> None:
        for key in list(self._running):
            await self._kill(key)
        await self.node.stop()

    async def _kill(self, key: str) -> None:
        # The pod's run first, so that it writes no status for a process killed under it.
        task = self._running.pop(key, None)
        if task is not None:
            task.cancel()
        proc = self._procs.pop(key, None)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.killed(*key.split("/")).set()

    def killed(self, namespace: str, pod: str) -> asyncio.Event:
        """Set once the pod's processes are killed (it was deleted while it ran)."""
        return self._killed.setdefault(f"{namespace}/{pod}", asyncio.Event())

    # -- one pod -----------------------------------------------------------------------------

    async def _object(self, collection: str, namespace: str, name: str) -> dict[str, Any]:
        """The object a pod's volume names, once this node may read it and it exists."""
        path = f"/api/v1/namespaces/{namespace}/{collection}"
        return await self._as_node(lambda: wait_for(self.api, path, name, lambda _: True,
                                                    within=60))  # fmt: skip

    @staticmethod
    async def _as_node(call: Callable[[], Awaitable[T]]) -> T:
        """*call*, again while the Node authorizer refuses it. That authorizer learns from its
        own informers that a pod bound here names a Secret, a ConfigMap or a service account:
        until it has, it refuses (403), and nothing announces the moment. A kubelet retries a
        volume until it mounts; so does this one, for a while."""
        end = asyncio.get_running_loop().time() + 60
        while True:
            try:
                return await call()
            except aiohttp.ClientResponseError as refused:
                if refused.status != 403 or asyncio.get_running_loop().time() > end:
                    raise
            await asyncio.sleep(0.2)

    async def _volumes(self, pod: dict[str, Any], base: Path) -> dict[str, Path]:
        namespace = pod["metadata"]["namespace"]
        paths: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            path = paths[volume["name"]] = base / "volumes" / volume["name"]
            path.mkdir(parents=True)
            files: dict[str, str] = {}
            for source in (volume.get("projected") or {}).get("sources", []):
                files |= await self._projected(pod, source)
            if "secret" in volume:
                data = self._secret_data(
                    await self._object("secrets", namespace, volume["secret"]["secretName"])
                )
                files |= self._select(data, volume["secret"].get("items"))
            self.mounted[namespace, pod["metadata"]["name"], volume["name"]] = files
            for name, text in files.items():
                (path / name).write_text(text)
        return paths

    async def _projected(self, pod: dict[str, Any], source: dict[str, Any]) -> dict[str, str]:
        """The files of one projected source: a ConfigMap's keys, the pod's namespace, or a
        service account token the node requests for this pod (as a kubelet does)."""
        namespace = pod["metadata"]["namespace"]
        if "configMap" in source:
            cm = await self._object("configmaps", namespace, source["configMap"]["name"])
            return self._select(cm.get("data") or {}, source["configMap"].get("items"))
        if "secret" in source:
            secret = await self._object("secrets", namespace, source["secret"]["name"])
            return self._select(self._secret_data(secret), source["secret"].get("items"))
        if "downwardAPI" in source:
            return {i["path"]: namespace for i in source["downwardAPI"]["items"]
                    if i.get("fieldRef", {}).get("fieldPath") == "metadata.namespace"}  # fmt: skip
        if "serviceAccountToken" in source:
            account = pod["spec"].get("serviceAccountName", "default")
            request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": source["serviceAccountToken"].get(
                                    "expirationSeconds", 3607),
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                   "name": pod["metadata"]["name"],
                                                   "uid": pod["metadata"]["uid"]}}}  # fmt: skip
            path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"

            async def token() -> str:
                async with (
                    self.api.session() as http,
                    http.post(self.api.url + path, json=request) as answer,
                ):
                    answer.raise_for_status()
                    return str((await answer.json())["status"]["token"])

            return {source["serviceAccountToken"]["path"]: await self._as_node(token)}
        raise NotImplementedError(f"projected source {sorted(source)}")

    @staticmethod
    def _select(data: dict[str, str], items: list[dict[str, str]] | None) -> dict[str, str]:
        """The files a volume's *items* pick from *data* (all of it when there are none); a
        key that is not there fails the mount, as it does a kubelet's."""
        if not items:
            return dict(data)
        missing = [i["key"] for i in items if i["key"] not in data]
        if missing:
            raise ContainerConfigError(f"couldn't find keys {missing} to mount")
        return {i["path"]: data[i["key"]] for i in items}

    @staticmethod
    def _secret_data(secret: dict[str, Any]) -> dict[str, str]:
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return data | dict(secret.get("stringData") or {})

    async def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"}
        # As a kubelet tells every container where its API is.
        host, port = self.api.url.removeprefix("https://").rsplit(":", 1)
        env |= {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif ref := (item.get("valueFrom") or {}).get("secretKeyRef"):
                namespace = pod["metadata"]["namespace"]
                data = self._secret_data(await self._object("secrets", namespace, ref["name"]))
                if ref["key"] not in data:
                    raise ContainerConfigError(
                        f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}"
                    )
                env[item["name"]] = data[ref["key"]]
        return env

    def _argv(self, pod: dict[str, Any], container: dict[str, Any],
              volumes: dict[str, Path]) -> list[str]:  # fmt: skip
        argv = [self.bwrap, "--tmpfs", "/"]
        for entry in sorted(Path("/").iterdir()):
            if entry.name in SKIP_ROOT:
                continue
            if entry.is_symlink():
                argv += ["--symlink", os.readlink(entry), str(entry)]
            else:
                argv += ["--ro-bind", str(entry), str(entry)]
        argv += ["--dev", "/dev", "--proc", "/proc", "--dir", "/run"]
        for mount in container.get("volumeMounts", []):
            flag = "--ro-bind" if mount.get("readOnly") else "--bind"
            # bwrap sets up before it pivots, so an absolute link on the way (/var/run ->
            # /run) would lead out of the pod: mount where the link points.
            argv += [flag, str(volumes[mount["name"]]), os.path.realpath(mount["mountPath"])]
        # The interpreter, this package and the test's remote may live under /tmp, which the
        # pod's own /tmp volume hides: bind them back, read-only.
        for path in [*runtime_paths(), *self.readable]:
            argv += ["--ro-bind", path, path]
        for path in self.writable:
            argv += ["--bind", path, path]
        context = {**(pod["spec"].get("securityContext") or {}),
                   **(container.get("securityContext") or {})}  # fmt: skip
        user = str(context.get("runAsUser", 0))
        argv += ["--remount-ro", "/", "--unshare-user", "--uid", user,
                 "--gid", str(context.get("runAsGroup", user)), "--unshare-pid", "--as-pid-1",
                 "--die-with-parent", "--new-session", "--chdir", "/"]  # fmt: skip
        command = container.get("command")
        if command is None:  # the image's own entrypoint, as a runtime would run it
            image = container["image"].rsplit(":", 1)[0]
            if image not in self.entrypoints:
                raise RuntimeError(f"the test kubelet knows no entrypoint of {image}")
            command = self.entrypoints[image]
        return [*argv, *command, *container.get("args", [])]

    async def _container(
        self, key: str, pod: dict[str, Any], container: dict[str, Any], volumes: dict[str, Path],
        deadline: float,
    ) -> dict[str, Any] | None:  # fmt: skip
        """Run one container; its terminated state, or None when the deadline struck."""
        env = await self._env(pod, container)
        started = _now()
        log_path = self.root / key.replace("/", "_") / f"{container['name']}.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(pod, container, volumes),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            self._procs[key] = proc
            try:
                code = await asyncio.wait_for(proc.wait(), max(0.1, deadline))
            except TimeoutError:
                proc.kill()
                await proc.wait()
                code = None
        namespace, name = key.split("/")
        self.logs[namespace, name, container["name"]] = log_path.read_text(
            "utf-8", errors="replace"
        )
        if code is None:
            return None
        message = ""
        path = container.get("terminationMessagePath")
        for mount in container.get("volumeMounts", []):
            if path and path.startswith(mount["mountPath"] + "/"):
                host = volumes[mount["name"]] / path[len(mount["mountPath"]) + 1 :]
                message = host.read_text()[:4096] if host.exists() else ""
        if (
            not message
            and code != 0
            and container.get("terminationMessagePolicy") == ("FallbackToLogsOnError")
        ):  # as a kubelet does: the log's last 80 lines, at most 2048 bytes
            tail = "\n".join(self.logs[namespace, name, container["name"]].splitlines()[-80:])
            message = tail.encode()[-2048:].decode(errors="replace")
        return {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "message": message, "startedAt": started, "finishedAt": _now()}  # fmt: skip

    async def _run_or_fail(self, http: aiohttp.ClientSession, pod: dict[str, Any]) -> None:
        """Run the pod; if this kubelet cannot, the pod fails saying why (a pod left Pending
        would only show as a test that waits for ever)."""
        try:
            await self._run_pod(http, pod)
        except Exception as exc:  # any failure is reported on the pod
            meta = pod["metadata"]
            url = f"{self.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
            said = f"the test kubelet could not run it: {exc!r}"
            failed = {"status": {"phase": "Failed", "reason": "KubeletError", "message": said}}
            merge = {"Content-Type": "application/merge-patch+json"}
            async with http.patch(url, json=failed, headers=merge):
                pass
            raise

    async def _run_pod(self, http: aiohttp.ClientSession, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        key = f"{meta['namespace']}/{meta['name']}"
        self.started.append(key)
        base = self.root / key.replace("/", "_")
        base.mkdir(parents=True)
        volumes = await self._volumes(pod, base)
        pod_url = f"{self.url}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"

        async def write(status: dict[str, Any]) -> None:
            merge = {"Content-Type": "application/merge-patch+json"}
            async with http.patch(f"{pod_url}/status", json={"status": status},
                                  headers=merge) as answer:  # fmt: skip
                if answer.status >= 400 and answer.status != 404:  # 404: deleted meanwhile
                    raise RuntimeError(f"pod status: {answer.status} {await answer.text()}")

        await write({"phase": "Running", "startTime": _now()})
        loop = asyncio.get_running_loop()
        end = loop.time() + spec.get("activeDeadlineSeconds", 3600)
        states: dict[str, list[dict[str, Any]]] = {"initContainerStatuses": [],
                                                   "containerStatuses": []}  # fmt: skip
        phase = "Succeeded"
        for group, containers in (("initContainerStatuses", spec.get("initContainers", [])),
                                  ("containerStatuses", spec["containers"])):  # fmt: skip
            for container in containers:
                waiting = None
                if container["image"] in self.unpullable:
                    waiting = {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{container["image"]}"',
                    }
                else:
                    try:
                        state = await self._container(key, pod, container, volumes,
                                                      end - loop.time())  # fmt: skip
                    except ContainerConfigError as exc:
                        waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
                if waiting is not None:  # as a kubelet leaves it: Pending, waiting, saying why
                    states[group].append({"name": container["name"], "ready": False,
                                          "state": {"waiting": waiting}, "restartCount": 0,
                                          "image": container["image"], "imageID": ""})  # fmt: skip
                    await write({"phase": "Pending", **states})
                    self._procs.pop(key, None)
                    return
                if state is None:
                    await write({"phase": "Failed", "reason": "DeadlineExceeded",
                                 "message": "Pod was active on the node longer than the specified"
                                            " deadline"})  # fmt: skip
                    return
                states[group].append({"name": container["name"], "state": {"terminated": state},
                                      "ready": False, "restartCount": 0,
                                      "image": container["image"], "imageID": ""})  # fmt: skip
                if state["exitCode"] != 0:
                    phase = "Failed"
                    break
            if phase == "Failed":
                break
        await write({"phase": phase, **states})
        self._procs.pop(key, None)


@asynccontextmanager
async def kubelet_on(
    plane: ControlPlane, root: Path, readable: list[str] | None = None,
    namespace: str | None = None, entrypoints: dict[str, list[str]] | None = None,
    writable: list[str] | None = None, unpullable: tuple[str, ...] = (),
) -> AsyncIterator[Kubelet]:  # fmt: skip
    """A Node of its own on *plane* (running *namespace*'s pods only, when named), run by a
    test kubelet until the block ends; then the Node is deleted, so that no later pod is bound
    to a node nobody runs."""
    node = Node(plane, name=f"node-{uuid.uuid4().hex[:8]}", namespace=namespace)
    kubelet = Kubelet(node, root, readable=readable or [], writable=writable or [],
                      entrypoints=entrypoints or {}, unpullable=set(unpullable))  # fmt: skip
    running = asyncio.create_task(kubelet.run())
    try:
        # A new node is tainted not-ready until the node controller sees it Ready: the pods
        # of the test then do not start their life Unschedulable behind that taint.
        await wait_for(node.api, "/api/v1/nodes", node.name,
                       lambda o: not (o.get("spec") or {}).get("taints"), within=60)  # fmt: skip
        yield kubelet
    finally:
        await kubelet.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        with contextlib.suppress(ApiError):
            plane.request("DELETE", f"/api/v1/nodes/{node.name}")
