"""KubernetesExecutor: one pod per stage attempt, its inputs and credentials beside it.

Launch order is chosen for restart safety. The pod comes first (its deterministic name
makes a second create fail with 409, so no attempt ever gets two pods), then its input
ConfigMap and its credentials Secret (the kubelet holds the pod in ContainerCreating until
both exist). The input ConfigMap, owned by the task, outlives the pod, so "the ConfigMap
exists but the pod does not" means the pod was launched and then lost: deleted or
garbage-collected before its result was read.

Results are read from the pod's status (termination message, reasons) and the last marked
line of its log; then the pod and its Secret are deleted. Kubernetes would delete the
Secret with its owner pod, and deleting it here as well means a crashed or slow garbage
collector never leaves a credential behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentfactory.kube.client import Kube, KubeError, path_of
from agentfactory.kube.pods import PodOutcome, failure_of, outcome_of
from agentfactory.manifests.agents import (
    MANAGED,
    Attempt,
    credentials_secret,
    input_config_map,
    not_made_for,
)


class ForeignObjectError(Exception):
    """An object with an attempt's name that the operator did not make: refused, not used."""


@dataclass
class KubernetesExecutor:
    """Creates, reads and removes stage pods through the API server."""

    kube: Kube

    async def _create(
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

    async def launch(
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
        created = await self._create(path_of("v1", "pods", ns), pod, attempt, task_uid)
        if created is None:  # created and deleted in between: the next pass relaunches
            raise KubeError(409, f"pod {attempt.pod} vanished while it was being launched")
        uid = created["metadata"].get("uid", "")
        secret = credentials_secret(attempt, uid, credentials)
        try:
            await self._create(path_of("v1", "configmaps", ns), inputs, attempt, task_uid)
            await self._create(path_of("v1", "secrets", ns), secret, attempt, uid)
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

    async def outcome(self, pod: dict[str, Any]) -> PodOutcome:
        """What a finished pod handed back (its log is read only when it can hold a result)."""
        failure = failure_of(pod)
        if failure is not None:
            return failure
        meta = pod["metadata"]
        try:
            log = await self.kube.logs(meta["namespace"], meta["name"], "agent")
        except KubeError as exc:
            return PodOutcome(None, f"its log could not be read: {exc}", "malformed-result")
        return outcome_of(pod, log)

    async def remove_inputs(self, namespace: str, task: str) -> None:
        """Delete the input ConfigMaps of every attempt of *task* (once it has ended: until
        then they tell what each attempt was given, and that it was launched)."""
        labels = {**MANAGED, "agentfactory.dev/task": task}
        await self.kube.delete_all(path_of("v1", "configmaps", namespace), labels)

    async def remove_credentials(self, namespace: str, pod: str) -> None:
        """Delete the pod's credentials (a finished pod kept for debugging needs none)."""
        await self.kube.delete(path_of("v1", "secrets", namespace, f"{pod}-credentials"))

    async def remove(self, namespace: str, pod: str) -> None:
        """Delete the pod and its credentials (idempotent)."""
        await self.remove_credentials(namespace, pod)
        await self.kube.delete(path_of("v1", "pods", namespace, pod))
