"""FactorySpec handlers: validate, set Ready and CredentialsValid, keep the agents'
ServiceAccount and NetworkPolicy, and count the factory's tasks.

One idempotent reconcile, stacked on create, update and resume. As tasks move, the namespace's
worker keeps the task-derived fields (counts, merge queue) current from its view, so no timer
is needed (a timer would also race the create handler for the finalizer). Bad specs never
raise: they become a condition with the field and the fix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from agentfactory.controller import model_key
from agentfactory.controller.records import parse
from agentfactory.core.factory import FactorySpecSpec, FactorySpecStatus, MergedBy
from agentfactory.core.factory_status import factory_status
from agentfactory.core.forges import ForgeBusyError, ForgeError
from agentfactory.core.mergepatch import merge_patch
from agentfactory.core.secret_optin import refusal
from agentfactory.forge.registry import build_forge, merge_queues, settings, verifiable
from agentfactory.kube.client import Kube, SecretRefusedError, path_of
from agentfactory.loop.reconciler import task_info
from agentfactory.manifests.agents import (
    agent_network_policy,
    agent_service_account,
    gateway_port,
)

if TYPE_CHECKING:
    from agentfactory.core.scheduler import TaskInfo

GROUP, VERSION = "agentfactory.dev", "v1alpha1"
log = logging.getLogger(__name__)


def _secret_names(spec: Any) -> dict[str, str]:
    """Secrets a raw spec refers to, with the field that names each (read by name: the
    operator never lists Secrets)."""
    names: dict[str, str] = {}
    if not isinstance(spec, dict):
        return names
    creds = (spec.get("repository") or {}).get("credentials") or {}
    for kind in ("githubApp", "token"):
        if isinstance(creds.get(kind), dict) and creds[kind].get("secretName"):
            names[str(creds[kind]["secretName"])] = f"spec.repository.credentials.{kind}"
    key = (spec.get("agents") or {}).get("apiKeySecretRef") or {}
    if isinstance(key, dict) and key.get("name"):
        names.setdefault(str(key["name"]), "spec.agents.apiKeySecretRef")
    hook = ((spec.get("escalation") or {}).get("notify") or {}).get("webhookSecretRef") or {}
    if isinstance(hook, dict) and hook.get("name"):
        names.setdefault(str(hook["name"]), "spec.escalation.notify.webhookSecretRef")
    return names


async def _task_infos(kube: Kube, namespace: str, factory: str) -> list[TaskInfo]:
    tasks = await kube.list(path_of(f"{GROUP}/{VERSION}", "agenttasks", namespace))
    return [task_info(record) for record in map(parse, tasks) if record.factory == factory]


@dataclass(frozen=True)
class Tried:
    """What trying the factory's forge found."""

    rejected: str | None = None
    """Why the forge refuses the credentials (None: they reach the repository, or the forge
    has no way to try them)."""
    unfit: list[str] = dataclasses.field(default_factory=list)
    """What of the spec the repository's settings refuse."""
    merged_by: MergedBy | None = None
    """Whose merge queue merges into the base branch (None: not known)."""


async def _try_forge(spec: FactorySpecSpec, secrets: dict[str, dict[str, str]]) -> Tried:
    """Try the factory's forge once: the only way to know an App's id, key and installation
    fit, that a token is alive, and what the repository's settings and rules say. *secrets*:
    the Secrets the spec names that exist, decoded."""
    secret = spec.repository.credentials_secret
    if secret not in secrets:
        return Tried()
    try:
        forge = build_forge(spec.repository, Path(tempfile.gettempdir()), secrets[secret])
        try:
            if (tryable := verifiable(forge)) is not None:
                await asyncio.to_thread(tryable.verify)
            unfit: list[str] = []
            if (judged := settings(forge)) is not None:
                unfit = await asyncio.to_thread(judged.refusals, spec.merge.method)
            queues = merge_queues(forge)
            github = queues is not None and await asyncio.to_thread(queues.merge_queue)
            return Tried(unfit=unfit, merged_by="github-merge-queue" if github else "agentfactory")
        finally:
            forge.close()
    except ForgeBusyError as exc:  # says nothing about the credentials: judge them next time
        log.warning("credentials of %s not tried: %s", spec.repository.url, exc)
    except ForgeError as exc:
        return Tried(rejected=str(exc))
    return Tried()


async def _try_model_key(spec: FactorySpecSpec, secrets: dict[str, dict[str, str]]) -> str | None:
    """Why the model API refuses the factory's key, if it holds one the API can be asked
    about (None: it takes it, or there is none yet: the spec's own condition says so)."""
    agents = spec.agents
    ref = agents.api_key_secret_ref
    key = secrets.get(ref.name, {}).get(ref.key) if ref is not None else None
    if ref is None or not key:
        return None
    return await model_key.refused(key, agents.base_url, ref.name)


async def reconcile(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch) -> None:
    """Gather, decide, apply; the status is written once, and only when it changed."""
    kube: Kube = memo.kube
    meta, namespace, name = (
        body.metadata,
        body.metadata.namespace or "default",
        body.metadata.name or "",
    )
    secrets = {}  # each named Secret read once: whether it exists, and what it holds
    refused = {}  # the ones that do not let this factory use them: what to do
    for secret, field in _secret_names(body.get("spec")).items():
        try:
            data = await kube.secret_data(namespace, secret, name)
        except SecretRefusedError:
            refused[secret] = refusal(secret, name, field)
            continue
        if data is not None:
            secrets[secret] = data
    try:
        valid: FactorySpecSpec | None = FactorySpecSpec.model_validate(body.get("spec"))
    except ValidationError:
        valid = None  # the status says what is wrong
    if valid is not None:
        # First, before the credentials are tried (calls to the forge and the model API that
        # take their time): the task's first pod may be on its way, and it needs both.
        uid = meta.uid or ""
        await kube.ensure(path_of("v1", "serviceaccounts", namespace),
                          agent_service_account(name, namespace, uid))  # fmt: skip
        gateway = memo.get("gateway")
        port = gateway_port(gateway.url if gateway is not None else None)
        await kube.ensure(path_of("networking.k8s.io/v1", "networkpolicies", namespace),
                          agent_network_policy(name, namespace, uid, valid, port))  # fmt: skip
    tasks = await _task_infos(kube, namespace, name)
    old_raw = body.get("status")
    old = FactorySpecStatus.model_validate(old_raw) if old_raw else None
    tried = await _try_forge(valid, secrets) if valid else Tried()
    status, _ = factory_status(
        raw_spec=body.get("spec"), generation=meta.get("generation"), old=old, secrets=secrets,
        tasks=tasks, now=datetime.now(UTC), rejected=tried.rejected, refused=refused,
        unfit=tried.unfit, key_refused=await _try_model_key(valid, secrets) if valid else None,
    )  # fmt: skip
    if tried.merged_by is not None:
        status.merged_by = tried.merged_by
    new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    if new != old_raw:
        patch.status.update(merge_patch(old_raw or {}, new))


@kopf.on.resume(GROUP, VERSION, "factoryspecs", id="factory-resume")
@kopf.on.create(GROUP, VERSION, "factoryspecs", id="factory-create")
@kopf.on.update(GROUP, VERSION, "factoryspecs", id="factory-update")
async def on_factory(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    await reconcile(body, memo, patch)
