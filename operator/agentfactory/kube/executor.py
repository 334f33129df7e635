"""KubernetesExecutor: one pod per stage attempt, its inputs and credentials beside it.

Four API requests make a stage pod's whole life when it succeeds: create the pod, create its
Secret, read its log once it has finished, delete it. Everything else comes from the
operator's watch of its pods (`kube.view`).

Launch order is chosen for safety. The factory's NetworkPolicy must exist first (without it
the pod could reach anything, the API server included). The pod comes next (its
deterministic name makes a second create fail with 409, so no attempt ever gets two pods),
then its one Secret, inputs and credentials together, owned by the pod; the kubelet holds the
pod in ContainerCreating until it exists. The Secret's name has a random part, written into
the pod: nobody can make it first and have the pod mount their contract. A launch resumed
after a crash finds the pod and reads the name from it.

Results are read from the pod's status (termination message, reasons) and the last marked
line of its log; then the pod is deleted, and Kubernetes' garbage collector deletes its Secret
with it (its credentials expire on their own, and a gateway token is closed once the result
is read). A failed pod is kept, without its Secret, for debugging.

A pod the watch saw deleted before it finished is a failed attempt (evicted); one that was
deleted while no operator ran is launched again under the same name.
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
    MODEL_TOKEN,
    AttemptSecret,
    agent_network_policy,
    agent_pod,
    gateway_port,
    input_files,
    network_policy_name,
    not_made_for,
    secret_of,
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
        role = launch.contract.role.value if launch.contract is not None else None
        key = factory.agents.api_key_secret_ref
        if role is not None and key is not None and self.may_use_secret is not None:
            await self.may_use_secret(key.name, attempt.factory, "spec.agents.apiKeySecretRef")
        credentials = dict(launch.credentials)
        if self.gateway is not None and launch.contract is not None:
            credentials[MODEL_TOKEN] = self.gateway.token(attempt, factory, launch.contract.limits)
        inputs = input_files(launch.contract, launch.checks, launch.prove)
        secret = AttemptSecret.of(attempt, inputs, credentials)  # too large: nothing is made
        await self._confined(attempt.namespace, attempt.factory, factory)
        gateway = self.gateway.url if self.gateway is not None else None
        body = agent_pod(attempt, factory, role=role, repo_url=factory.repository.url,
                         ref=launch.ref, secret=secret, gateway_url=gateway)  # fmt: skip
        body["metadata"]["annotations"][BASE] = launch.base
        pod = await self.create(attempt, body, secret)
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
        ns = attempt.namespace
        if self.view is not None:
            pod = self.view.get("pods", ns, attempt.pod)
            if pod is None and self.view.was_deleted("pods", ns, attempt.pod):
                return Outcome(None, f"pod {attempt.pod} was deleted before it finished",
                               "evicted")  # fmt: skip
        else:  # no watch to ask: the API is
            pod = await self.kube.get(path_of("v1", "pods", ns, attempt.pod))
        if pod is None:
            return Absent()
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
        """Delete the attempt's pod (its Secret goes with it); with *keep*, keep the pod
        (without its Secret) in place of the task's previously kept one."""
        ns = attempt.namespace
        if not keep:
            await self.delete(ns, attempt.pod)
            return
        for pod in self.view.in_namespace("pods", ns) if self.view else []:
            labels = pod["metadata"].get("labels") or {}
            name = pod["metadata"]["name"]
            if labels.get("agentfactory.dev/task") == attempt.task and labels.get(KEPT) == "true":
                await self.delete(ns, name)
        kept = self.view.get("pods", ns, attempt.pod) if self.view else None
        if kept is None:
            kept = await self.kube.get(path_of("v1", "pods", ns, attempt.pod))
        if (secret := secret_of(kept or {})) is not None:
            await self.kube.delete(path_of("v1", "secrets", ns, secret))
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
        self, attempt: Attempt, pod: dict[str, Any], secret: AttemptSecret
    ) -> dict[str, Any]:
        """Start the attempt's pod (or find it) and make sure its Secret exists."""
        ns = attempt.namespace
        created = await self._create_one(path_of("v1", "pods", ns), pod, attempt, attempt.task_uid)
        if created is None:  # created and deleted in between: the next pass relaunches
            raise KubeError(409, f"pod {attempt.pod} vanished while it was being launched")
        named = secret_of(created)  # a pod found (a resumed launch) names its own Secret
        if named is None:
            raise KubeError(409, f"pod {attempt.pod} names no Secret of its own")
        uid = created["metadata"].get("uid", "")
        body = replace(secret, name=named).manifest(attempt, uid)
        try:
            await self._create_one(path_of("v1", "secrets", ns), body, attempt, uid)
        except ForeignObjectError:  # the pod would start on someone else's inputs
            await self.kube.delete(path_of("v1", "pods", ns, attempt.pod))
            raise
        return created

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

    async def delete(self, namespace: str, pod: str) -> None:
        """Delete the pod (idempotent); its Secret goes with it."""
        await self.kube.delete(path_of("v1", "pods", namespace, pod))
        if self.view is not None:
            self.view.drop("pods", namespace, pod)
