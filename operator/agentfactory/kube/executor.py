"""KubernetesExecutor: one pod per stage attempt, its inputs and credentials beside it.

Launch order is chosen for restart safety. The factory's NetworkPolicy must exist first
(without it the pod could reach anything, the API server included). The pod comes next (its
deterministic name makes a second create fail with 409, so no attempt ever gets two pods),
then its input ConfigMap and its credentials Secret (the kubelet holds the pod in
ContainerCreating until both exist). The input ConfigMap, owned by the task, outlives the
pod, so "the ConfigMap exists but the pod does not" means the pod was launched and then
lost: deleted or garbage-collected before its result was read.

Results are read from the pod's status (termination message, reasons) and the last marked
line of its log; then the pod and its Secret are deleted. Kubernetes would delete the
Secret with its owner pod, and deleting it here as well means a crashed or slow garbage
collector never leaves a credential behind. A failed pod is kept, without its credentials,
for debugging.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentfactory.core.executors import Absent, Outcome, RefusedError, Running
from agentfactory.core.phases import Stage
from agentfactory.kube.client import Kube, KubeError, path_of
from agentfactory.kube.pods import cannot_start, failure_of, is_done, outcome_of, overdue
from agentfactory.manifests.agents import (
    MANAGED,
    MODEL_TOKEN,
    agent_network_policy,
    agent_pod,
    credentials_secret,
    gateway_port,
    input_config_map,
    input_files,
    network_policy_name,
    not_made_for,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agentfactory.core.executors import Attempt, Launch, Observed
    from agentfactory.core.factory import FactorySpecSpec
    from agentfactory.kube.model_gateway import ModelGateway
    from agentfactory.kube.view import View

log = logging.getLogger("agentfactory.executor")
#: The pod annotation that keeps the base an attempt's diff is taken against.
BASE = "agentfactory.dev/base"
#: The label of a failed pod kept for debugging.
KEPT = "agentfactory.dev/kept"
#: How long a NetworkPolicy seen to exist is trusted to still exist.
CONFINED_SECONDS = 30


class ForeignObjectError(RefusedError):
    """An object with an attempt's name that the operator did not make: refused, not used."""


@dataclass
class KubernetesExecutor:
    """Creates, reads and removes stage pods through the API server."""

    kube: Kube
    view: View | None = None
    """The operator's view of its pods (a pod is looked up there before the API is asked)."""
    unschedulable_seconds: float = 600
    """How long a pod the scheduler cannot place waits before its attempt fails."""
    may_use_secret: Callable[[str, str, str], Awaitable[object]] | None = None
    """Raises when the factory may not use the Secret (name, factory, field) that its pods
    mount: the model key's Secret is checked before a pod would mount it."""
    gateway: ModelGateway | None = None
    """The model gateway: agents get a token for their attempt instead of the key, and each
    attempt is charged what the gateway counted."""
    _confining: dict[str, float] = field(default_factory=dict)

    # -- the Executor protocol ---------------------------------------------------------------

    async def launch(self, launch: Launch) -> None:
        """Build the attempt's pod and inputs, and create them (or find them created)."""
        attempt, factory = launch.attempt, launch.factory
        await self._confined(attempt.namespace, attempt.factory, factory)
        role = launch.contract.role.value if launch.contract is not None else None
        key = factory.agents.api_key_secret_ref
        if role is not None and key is not None and self.may_use_secret is not None:
            await self.may_use_secret(key.name, attempt.factory, "spec.agents.apiKeySecretRef")
        gateway = self.gateway.url if self.gateway is not None else None
        body = agent_pod(attempt, factory, role=role, repo_url=factory.repository.url,
                         ref=launch.ref, gateway_url=gateway)  # fmt: skip
        body["metadata"]["annotations"][BASE] = launch.base
        files = input_files(launch.contract, launch.checks, launch.prove)
        credentials = dict(launch.credentials)
        if self.gateway is not None and launch.contract is not None:
            credentials[MODEL_TOKEN] = self.gateway.token(attempt, factory, launch.contract.limits)
        pod = await self.create(attempt, body, files, credentials)
        if self.view is not None:
            self.view.put("pods", pod)
        log.info("%s/%s launched %s", attempt.namespace, attempt.task, attempt.pod)

    async def observe(self, attempt: Attempt) -> Observed:
        """The attempt's pod: absent, running, or finished with what it handed back and, with
        a gateway, what the gateway counted it spending (its token is closed then)."""
        observed = await self._observe(attempt)
        if not isinstance(observed, Outcome) or self.gateway is None:
            return observed
        if attempt.stage == Stage.CI:  # the CI pod runs the checks and calls no model
            return observed
        return replace(observed, metered=await self.gateway.close(attempt))

    async def _observe(self, attempt: Attempt) -> Observed:
        path = path_of("v1", "pods", attempt.namespace, attempt.pod)
        pod = self.view.get("pods", attempt.namespace, attempt.pod) if self.view else None
        if pod is None:
            if not await self.was_launched(attempt):
                return Absent()
            pod = await self.kube.get(path)
            if pod is None:
                await self.delete(attempt.namespace, attempt.pod)  # its Secret too
                return Outcome(None, f"pod {attempt.pod} was deleted before it finished",
                               "evicted")  # fmt: skip
            if self.view is not None:
                self.view.put("pods", pod)
        if foreign := not_made_for("Pod", pod, attempt, attempt.task_uid):
            raise ForeignObjectError(foreign)
        if is_done(pod):
            return await self.outcome(pod)
        if pod["metadata"].get("deletionTimestamp"):
            return Running()  # being deleted: the next pass sees it gone
        late = cannot_start(pod) or overdue(
            pod, datetime.now(UTC), timedelta(seconds=self.unschedulable_seconds)
        )
        if late is not None:
            await self.delete(attempt.namespace, attempt.pod)
            return late
        return Running()

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        """Delete the attempt's pod and credentials; with *keep*, keep the pod (without its
        credentials) in place of the task's previously kept one."""
        ns = attempt.namespace
        if not keep:
            await self.delete(ns, attempt.pod)
            return
        for pod in self.view.in_namespace("pods", ns) if self.view else []:
            labels = pod["metadata"].get("labels") or {}
            name = pod["metadata"]["name"]
            if labels.get("agentfactory.dev/task") == attempt.task and labels.get(KEPT) == "true":
                await self.delete(ns, name)
        await self.remove_credentials(ns, attempt.pod)
        with contextlib.suppress(KubeError):
            kept = await self.kube.patch(path_of("v1", "pods", ns, attempt.pod),
                                         {"metadata": {"labels": {KEPT: "true"}}})  # fmt: skip
            if self.view is not None:
                self.view.put("pods", kept)

    # -- the parts -------------------------------------------------------------------------

    async def _confined(self, namespace: str, factory: str, spec: FactorySpecSpec) -> None:
        """Make sure the factory's NetworkPolicy exists before a stage pod does (looked at
        most once per CONFINED_SECONDS). One deleted is made again here; one that cannot be
        made stops the launch."""
        name = network_policy_name(factory)
        if time.monotonic() - self._confining.get(name, -CONFINED_SECONDS) < CONFINED_SECONDS:
            return
        policies = path_of("networking.k8s.io/v1", "networkpolicies", namespace)
        if await self.kube.get(f"{policies}/{name}") is None:
            raw = (self.view.get("factoryspecs", namespace, factory) if self.view else None) or {}
            uid = (raw.get("metadata") or {}).get("uid", "")
            log.warning("%s: NetworkPolicy %s was missing; making it", namespace, name)
            try:
                port = gateway_port(self.gateway.url if self.gateway is not None else None)
                await self.kube.create(policies, agent_network_policy(factory, namespace, uid,
                                                                      spec, port))  # fmt: skip
            except KubeError as exc:
                if exc.status != 409:  # made meanwhile by the factory's handler: as good
                    raise
        self._confining[name] = time.monotonic()

    async def _create_one(
        self, collection: str, body: dict[str, Any], attempt: Attempt, owner_uid: str
    ) -> dict[str, Any] | None:
        """Create *body*; when it exists already (a launch resumed after a crash), the one
        found, if the operator made it for *attempt*, else ForeignObjectError. None when it
        was deleted in between."""
        try:
            return await self.kube.create(collection, body)
        except KubeError as exc:
            if exc.status != 409:
                raise
        found = await self.kube.get(f"{collection}/{body['metadata']['name']}")
        if found is not None and (foreign := not_made_for(body["kind"], found, attempt, owner_uid)):
            raise ForeignObjectError(foreign)
        return found

    async def create(
        self, attempt: Attempt, pod: dict[str, Any], files: dict[str, str],
        credentials: dict[str, str],
    ) -> dict[str, Any]:  # fmt: skip
        """Start the attempt's pod (or find it) and make sure its inputs exist."""
        ns = attempt.namespace
        inputs = input_config_map(attempt, files)  # too large: fails before anything exists
        task_uid = attempt.task_uid
        # Inputs someone else made first would be mounted by the pod: look before creating it.
        found = await self.kube.get(path_of("v1", "configmaps", ns, inputs["metadata"]["name"]))
        if found is not None and (foreign := not_made_for("ConfigMap", found, attempt, task_uid)):
            raise ForeignObjectError(foreign)
        created = await self._create_one(path_of("v1", "pods", ns), pod, attempt, task_uid)
        if created is None:  # created and deleted in between: the next pass relaunches
            raise KubeError(409, f"pod {attempt.pod} vanished while it was being launched")
        uid = created["metadata"].get("uid", "")
        secret = credentials_secret(attempt, uid, credentials)
        try:
            await self._create_one(path_of("v1", "configmaps", ns), inputs, attempt, task_uid)
            await self._create_one(path_of("v1", "secrets", ns), secret, attempt, uid)
        except ForeignObjectError:  # the pod would start on someone else's inputs
            await self.kube.delete(path_of("v1", "pods", ns, attempt.pod))
            raise
        return created

    async def was_launched(self, attempt: Attempt) -> bool:
        """Whether the attempt's pod was ever created (its input ConfigMap, made by the
        operator, exists)."""
        path = path_of("v1", "configmaps", attempt.namespace, f"{attempt.pod}-input")
        found = await self.kube.get(path)
        return (
            found is not None
            and not_made_for("ConfigMap", found, attempt, attempt.task_uid) is None
        )

    async def outcome(self, pod: dict[str, Any]) -> Outcome:
        """What a finished pod handed back (its log is read only when it can hold a result),
        with the base it was launched with and how long it ran."""
        meta = pod["metadata"]
        extra: dict[str, Any] = {"base": (meta.get("annotations") or {}).get(BASE)}
        if created := meta.get("creationTimestamp"):
            extra["seconds"] = (datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds()
        failure = failure_of(pod)
        if failure is not None:
            return replace(failure, **extra)
        try:
            log_text = await self.kube.logs(meta["namespace"], meta["name"], "agent")
        except KubeError as exc:
            return Outcome(None, f"its log could not be read: {exc}", "malformed-result")
        return replace(outcome_of(pod, log_text), **extra)

    async def remove_inputs(self, namespace: str, task: str) -> None:
        """Delete the input ConfigMaps of every attempt of *task* (once it has ended: until
        then they tell what each attempt was given, and that it was launched)."""
        labels = {**MANAGED, "agentfactory.dev/task": task}
        await self.kube.delete_all(path_of("v1", "configmaps", namespace), labels)

    async def remove_credentials(self, namespace: str, pod: str) -> None:
        """Delete the pod's credentials (a finished pod kept for debugging needs none)."""
        await self.kube.delete(path_of("v1", "secrets", namespace, f"{pod}-credentials"))

    async def delete(self, namespace: str, pod: str) -> None:
        """Delete the pod and its credentials (idempotent)."""
        await self.remove_credentials(namespace, pod)
        await self.kube.delete(path_of("v1", "pods", namespace, pod))
        if self.view is not None:
            self.view.drop("pods", namespace, pod)
