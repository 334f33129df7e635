"""Building blocks shared by both resources: object metadata, references, checks, regexes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import regex
from pydantic import AfterValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from agentfactory.core.base import Model
from agentfactory.core.names import K8sName

#: Names of checks, escalation rules and similar keys: short, shell- and label-friendly.
KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
#: A forge login or team (`alice`, `@alice`, `@org/team`).
#: A forge login or team (`alice`, `@org/team`), or a Kubernetes user name as an approval
#: annotation carries it (`alice@example.com`, `oidc:alice`).
LOGIN_PATTERN = r"^@?[A-Za-z0-9][A-Za-z0-9._@:+-]{0,252}(/[A-Za-z0-9_.-]+)?$"
#: A 40- or 64-hex-digit git object id.
SHA_PATTERN = r"^[0-9a-f]{40}([0-9a-f]{24})?$"
#: Kubernetes resource quantity (`500m`, `2Gi`).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def list_map(*keys: str) -> dict[str, Any]:
    """Schema markers for a list keyed by *keys* (server-side merge, duplicate keys refused)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def check_regex(value: str) -> str:
    """*value* must compile as the escalation policy compiles it (the `regex` module)."""
    try:
        regex.compile(value)
    except regex.error as exc:
        raise PydanticCustomError(
            "regex",
            "regular expression '{pattern}' does not compile: {error}; fix the pattern"
            " (escape literal characters such as '(' or '[' with a backslash)",
            {"pattern": value, "error": str(exc)},
        ) from None
    return value


Regex = Annotated[str, AfterValidator(check_regex)]


def unique_by(items: list[Any], key: str, what: str) -> None:
    """Raise when two *items* share the attribute *key*."""
    seen: set[str] = set()
    for item in items:
        value = getattr(item, key)
        if value in seen:
            raise PydanticCustomError(
                "duplicate",
                "{what} '{value}' appears twice; give each {what} a unique {key}",
                {"what": what, "value": value, "key": key},
            )
        seen.add(value)


class ObjectMeta(Model):
    """The part of Kubernetes object metadata agentfactory reads."""

    model_config = ConfigDict(extra="ignore")

    name: K8sName
    """The object's name: a DNS-1123 label (lowercase, digits, '-', at most 63)."""
    namespace: str | None = None
    """The namespace the object lives in."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels on the object."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations; human actions arrive here (`agentfactory.dev/approved-by` ...)."""
    generation: int | None = None
    """The spec generation, set by the API server."""
    creation_timestamp: datetime | None = None
    """When the object was created; older tasks go first among equal priorities."""
    uid: str | None = None
    """The object's unique id, used for owner references."""


class SecretKeyRef(Model):
    """A key in a Secret in the resource's namespace."""

    name: K8sName
    """Name of the Secret."""
    key: str = Field(default="api-key", min_length=1, max_length=253)
    """Key inside the Secret."""


class ConfigMapKeyRef(Model):
    """A key in a ConfigMap in the resource's namespace."""

    name: K8sName
    """Name of the ConfigMap."""
    key: str = Field(default="AGENTS.md", min_length=1, max_length=253)
    """Key inside the ConfigMap."""


class Check(Model):
    """A named shell command that must exit 0 (format, lint, typecheck, test, build)."""

    name: str = Field(pattern=KEY_PATTERN)
    """Short unique name, as it appears in reports and required checks (`test`)."""
    command: str = Field(min_length=1, max_length=4096)
    """Shell command run from the repository root in the sandbox (`pytest -q`)."""
    timeout_seconds: int = Field(default=600, ge=1, le=86400)
    """Seconds before the command is killed and counted as failed."""
