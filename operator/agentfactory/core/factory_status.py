"""A FactorySpec's status, decided from what the operator gathered: the raw spec, which
Secrets exist, and its tasks. Pure; the handler writes the result once if it changed.

Conditions:
- `Ready`: the spec is valid and every Secret it names exists and lets the factory use it
  (`SecretNotAllowed` otherwise, with the label to add); otherwise False with the field and
  the fix (the same words as `agentfactory validate`).
- `CredentialsValid`: True for a GitHub App (tokens are scoped per pod) or a forge that needs
  none; False but usable (`TokenCannotBeScoped`) for a plain token; False when a Secret is
  missing, or when the forge refused the credentials (`CredentialsRejected`: the operator
  tries a GitHub App by minting a token, and says what to fix).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agentfactory.core.conditions import ConditionType, set_condition
from agentfactory.core.explain import explain
from agentfactory.core.factory import FactorySpecSpec, FactorySpecStatus, TaskCounts
from agentfactory.core.phases import LOCKING, Phase
from agentfactory.core.scheduler import merge_queue

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from agentfactory.core.conditions import ConditionStatus
    from agentfactory.core.scheduler import TaskInfo


def _counts(tasks: Sequence[TaskInfo]) -> TaskCounts:
    by_phase: dict[str, int] = {}
    for task in tasks:
        by_phase[task.phase.value] = by_phase.get(task.phase.value, 0) + 1
    return TaskCounts(
        total=len(tasks),
        active=sum(1 for t in tasks if t.phase in LOCKING),
        merged=by_phase.get(Phase.MERGED.value, 0),
        needs_attention=by_phase.get(Phase.NEEDS_ATTENTION.value, 0),
        by_phase=by_phase,
    )


def _credentials(
    spec: FactorySpecSpec, secrets: Collection[str]
) -> tuple[ConditionStatus, str, str]:
    creds = spec.repository.credentials
    if creds is None:
        return "True", "NoCredentialsNeeded", "the git remote needs no credentials"
    app, token = creds.github_app, creds.token
    name = spec.repository.credentials_secret or ""
    if name not in secrets:
        keys = "app-id, installation-id, private-key" if app else "token"
        return "False", "SecretMissing", f"Secret '{name}' does not exist; create it with {keys}"
    if token is not None:
        return ("False", "TokenCannotBeScoped",
                f"Secret '{name}' holds a plain token: it works, but every agent pod gets the"
                " same rights; use a GitHub App to scope tokens per pod and role")  # fmt: skip
    return "True", "AppCredentials", f"GitHub App credentials in Secret '{name}'"


#: The status fields `progress` fills (kept current by the operator's worker as tasks move),
#: by name and as the API spells them.
PROGRESS_FIELDS = {"tasks", "merge_queue", "merging"}
PROGRESS_KEYS = {FactorySpecStatus.model_fields[f].alias or f for f in PROGRESS_FIELDS}


def progress(tasks: Sequence[TaskInfo]) -> FactorySpecStatus:
    """The part of a factory's status its tasks decide: counts, merge queue, the merging task."""
    return FactorySpecStatus(
        tasks=_counts(tasks),
        merge_queue=[t.name for t in merge_queue(tasks) if not t.merge_running],
        merging=next((t.name for t in tasks if t.merge_running), None),
    )


def factory_status(
    *,
    raw_spec: Any,
    generation: int | None,
    old: FactorySpecStatus | None,
    secrets: Collection[str],
    tasks: Sequence[TaskInfo],
    now: datetime,
    rejected: str | None = None,
    refused: Mapping[str, str] | None = None,
    unfit: Sequence[str] = (),
    key_refused: str | None = None,
) -> tuple[FactorySpecStatus, FactorySpecSpec | None]:
    """The whole new status, and the validated spec (None when it is invalid). *rejected*:
    why the forge refused the credentials when the operator tried them (None: accepted);
    *refused*: the named Secrets that do not let the factory use them, with what to do;
    *unfit*: what of the spec the repository's settings refuse, each with its field;
    *key_refused*: why the model API refused the agents' key when the operator tried it."""
    status = (old or FactorySpecStatus()).model_copy(deep=True)
    status.observed_generation = generation
    current = progress(tasks)
    status.tasks, status.merge_queue, status.merging = (
        current.tasks, current.merge_queue, current.merging)  # fmt: skip

    def condition(kind: ConditionType, value: ConditionStatus, reason: str, message: str) -> None:
        status.conditions = set_condition(
            status.conditions, type=kind, status=value, reason=reason, message=message,
            now=now, observed_generation=generation,
        )  # fmt: skip

    try:
        spec = FactorySpecSpec.model_validate(raw_spec)
    except ValidationError as exc:
        problems = explain(exc, FactorySpecSpec, "spec.")
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        condition(ConditionType.READY, "False", "InvalidSpec", "; ".join(problems[:5]) + more)
        condition(ConditionType.CREDENTIALS_VALID, "Unknown", "InvalidSpec", "the spec is invalid")
        return status, None
    refused = refused or {}
    value, reason, message = _credentials(spec, secrets)
    credentials = spec.repository.credentials_secret or ""
    if credentials in refused:
        value, reason, message = "False", "SecretNotAllowed", refused[credentials]
    elif rejected is not None and reason != "SecretMissing":
        value, reason, message = "False", "CredentialsRejected", rejected
    condition(ConditionType.CREDENTIALS_VALID, value, reason, message)
    key = spec.agents.api_key_secret_ref
    if refused:
        condition(ConditionType.READY, "False", "SecretNotAllowed", "; ".join(refused.values()))
    elif reason in ("SecretMissing", "CredentialsRejected"):
        condition(ConditionType.READY, "False", reason, message)
    elif unfit:
        condition(ConditionType.READY, "False", "InvalidSpec", "; ".join(unfit))
    elif key is None:
        condition(ConditionType.READY, "False", "APIKeySecretMissing",
                  "spec.agents.apiKeySecretRef is not set, so the agents would have no model key"
                  " and every stage would fail; create a Secret with the key (kubectl create"
                  " secret generic anthropic --from-literal=api-key=sk-ant-...) and name it"
                  " there")  # fmt: skip
    elif key.name not in secrets:
        condition(ConditionType.READY, "False", "APIKeySecretMissing",
                  f"spec.agents.apiKeySecretRef: Secret '{key.name}' does not exist; create it"
                  f" with the key '{key.key}'")  # fmt: skip
    elif isinstance(secrets, Mapping) and key.key not in secrets[key.name]:
        condition(ConditionType.READY, "False", "APIKeySecretMissing",
                  f"spec.agents.apiKeySecretRef: Secret '{key.name}' has no key '{key.key}'"
                  f" (it has {', '.join(sorted(secrets[key.name])) or 'none'}); add it, or name"
                  " the key it has")  # fmt: skip
    elif key_refused is not None:
        condition(ConditionType.READY, "False", "APIKeyRejected", key_refused)
    else:
        condition(ConditionType.READY, "True", "Reconciled", "the factory is ready")
    return status, spec
