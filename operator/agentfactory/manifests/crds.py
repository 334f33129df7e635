"""CustomResourceDefinitions generated from the pydantic models (the single source of truth).

Pydantic writes JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema. The
translation: ``$ref`` inlined; ``Optional[X]`` (``anyOf [X, null]``) becomes X, since an
absent field is how Kubernetes spells "none"; ``const`` becomes a one-value ``enum``;
numeric ``exclusiveMinimum: n`` becomes ``minimum: n`` plus ``exclusiveMinimum: true``;
``title`` and ``additionalProperties: false`` are dropped (structural schemas prune unknown
fields, and ``additionalProperties`` may not sit beside ``properties``).
"""

from __future__ import annotations

import re
from typing import Any

from agentfactory import GROUP, VERSION
from agentfactory.core.factory import FactorySpec
from agentfactory.core.names import DNS1123_LABEL, MAX_NAME_LENGTH
from agentfactory.core.schema import inline_schema
from agentfactory.core.task import AgentTask

Schema = dict[str, Any]

_DROP = {"title", "discriminator"}


class SchemaError(ValueError):
    """A model produced a schema Kubernetes cannot take (a bug in a model)."""


def _structural(node: Schema, where: str) -> Schema:
    node = _structural_keys(node, where)
    # Docstrings wrap at 100 columns; kubectl explain and the docs want one paragraph.
    if isinstance(node.get("description"), str):
        node["description"] = re.sub(r"\s*\n\s*", " ", node["description"].strip())
    ordered: Schema = {key: node.pop(key) for key in ("type", "description") if key in node}
    return {**ordered, **node}


def _structural_keys(node: Schema, where: str) -> Schema:
    node = dict(node)
    for variants_key in ("anyOf", "oneOf"):
        if variants_key in node:
            variants = [v for v in node.pop(variants_key) if v.get("type") != "null"]
            if len(variants) != 1:
                raise SchemaError(f"{where}: unions are not structural: {variants}")
            outer = {k: v for k, v in node.items() if k not in ("default",) or v is not None}
            node = {**variants[0], **outer}
    if node.get("default", 0) is None:
        del node["default"]
    for key in _DROP:
        node.pop(key, None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[inclusive] = node[bound]
            node[bound] = True
    if node.get("additionalProperties") is False or node.get("additionalProperties") is True:
        del node["additionalProperties"]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if "type" not in node:
        raise SchemaError(f"{where}: no type in {node}")
    if "properties" in node:
        node["properties"] = {
            name: _structural(prop, f"{where}.{name}") for name, prop in node["properties"].items()
        }
        node.setdefault("type", "object")
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"], f"{where}.*")
    if "items" in node:
        node["items"] = _structural(node["items"], f"{where}[]")
    return node


def openapi_schema(model: type[FactorySpec] | type[AgentTask]) -> Schema:
    """The structural ``openAPIV3Schema`` of a resource model."""
    resolved = inline_schema(model)
    schema = _structural(resolved, model.__name__)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "description": props["apiVersion"]["description"]}
    props["kind"] = {"type": "string", "description": props["kind"]["description"]}
    props["metadata"] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME_LENGTH, "pattern": DNS1123_LABEL}
        },
    }
    schema["required"] = ["spec"]
    return schema


def _crd(
    model: type[FactorySpec] | type[AgentTask],
    *,
    plural: str,
    short: str,
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    kind = model.__name__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "agentfactory"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["factory"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": openapi_schema(model)},
                }
            ],
        },
    }


def _col(name: str, kind: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": kind,
        "jsonPath": path,
        "description": description,
    }
    if priority:
        column["priority"] = priority
    return column


_AGE = _col("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


def agenttask_crd() -> dict[str, Any]:
    """The AgentTask CRD."""
    return _crd(
        AgentTask,
        plural="agenttasks",
        short="atask",
        columns=[
            _col("Factory", "string", ".spec.factoryRef", "The FactorySpec running the task."),
            _col("Phase", "string", ".status.phase", "Pipeline phase."),
            _col("Stage", "string", ".status.stage", "Current or last stage."),
            _col("Attempt", "integer", ".status.attempt", "Attempt of the current stage."),
            _col("PR", "integer", ".status.pullRequest.number", "Pull request number."),
            _AGE,
            _col("Message", "string", ".status.message", "Why the task is here.", priority=1),
        ],
    )


def factoryspec_crd() -> dict[str, Any]:
    """The FactorySpec CRD."""
    return _crd(
        FactorySpec,
        plural="factoryspecs",
        short="fspec",
        columns=[
            _col("Repo", "string", ".spec.repository.url", "Target repository."),
            _col("Active", "integer", ".status.tasks.active", "Tasks holding a slot."),
            _col("Merged", "integer", ".status.tasks.merged", "Tasks merged."),
            _col(
                "Attention",
                "integer",
                ".status.tasks.needsAttention",
                "Tasks waiting for a person.",
            ),
            _AGE,
            _col(
                "Ready",
                "string",
                '.status.conditions[?(@.type=="Ready")].status',
                "Whether the factory is ready.",
                priority=1,
            ),
        ],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name to CRD, as written to ``crds/``."""
    return {"factoryspecs.yaml": factoryspec_crd(), "agenttasks.yaml": agenttask_crd()}
