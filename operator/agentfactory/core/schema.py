"""JSON Schema of a model with every `$ref` inlined: what Kubernetes' structural schemas and
the Messages API's tool `input_schema` both want."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

if TYPE_CHECKING:
    from pydantic_core import core_schema


class _FactoryDefaults(GenerateJsonSchema):
    """Defaults made by a factory are shown too: a list's entries, and an object's fields
    that differ from their own defaults (`{}` for most), as Kubernetes applies them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):  # what the factory sets beyond the fields' defaults
            return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return value


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The validation-mode JSON Schema of *model* (camelCase aliases), refs inlined."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_FactoryDefaults
    )
    defs = raw.pop("$defs", {})
    resolved: dict[str, Any] = _resolve(raw, defs)
    return resolved
