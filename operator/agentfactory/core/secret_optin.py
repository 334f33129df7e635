"""Which Secrets a factory may use. Writing a FactorySpec must not be a key to every Secret in
its namespace (the operator would send what it names to a URL of the writer's choice), so a
Secret is used only when it says which factories may: the label
`agentfactory.dev/factory=<name>` for one, or the annotation
`agentfactory.dev/factories: "<name>,<name>"` for several."""

from __future__ import annotations

from typing import Any

LABEL = "agentfactory.dev/factory"
ANNOTATION = "agentfactory.dev/factories"


def may_use(secret: dict[str, Any], factory: str) -> bool:
    """Whether the Secret object *secret* lets *factory* use it."""
    meta = secret.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL) == factory:
        return True
    listed = (meta.get("annotations") or {}).get(ANNOTATION, "")
    return factory in {name.strip() for name in listed.split(",")}


def refusal(secret: str, factory: str, field: str) -> str:
    """What to tell the factory's owner about a Secret that does not let it be used."""
    return (
        f"{field}: Secret '{secret}' does not let FactorySpec '{factory}' use it; label it:"
        f" kubectl label secret {secret} {LABEL}={factory} (or list the factories in its"
        f" {ANNOTATION} annotation)"
    )
