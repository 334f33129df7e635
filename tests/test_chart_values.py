"""The chart's values: every one documented in values.yaml and typed in values.schema.json,
which accepts the defaults and rejects a wrong value with a message naming it. (Helm checks
values against the same schema before it renders anything.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CHART = Path(__file__).parent.parent / "charts" / "agentfactory"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def problems(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(values)]  # fmt: skip


def test_the_defaults_are_valid() -> None:
    assert problems(VALUES) == []


def test_every_value_has_a_comment_and_a_described_schema() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    whole: list[int] = []  # indents of documented maps: their keys are the default's content
    for index, line in enumerate(lines):
        key = re.match(r"^(\s*)([A-Za-z][\w-]*):(.*)$", line)
        if key is None:
            continue  # a comment or a list item
        indent, documented = len(key[1]), lines[index - 1].strip().startswith("#")
        whole = [i for i in whole if i < indent]
        if whole:
            continue
        if not key[3].strip():  # a parent: documented as a whole, or key by key
            if documented:
                whole.append(indent)
            continue
        assert documented, f"values.yaml line {index + 1}: document {key[2]}"

    def described(schema: dict[str, Any], path: str) -> None:
        for name, prop in (schema.get("properties") or {}).items():
            assert prop.get("description"), f"{path}{name} has no description"
            described(prop, f"{path}{name}.")

    described(SCHEMA, "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replicaCount": 0}, "replicaCount: 0 is less than the minimum of 1"),
        ({"operator": {"logFormat": "xml"}}, "operator.logFormat: 'xml' is not one of"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0: 'Team_A' does not match"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}},
         "metrics.serviceMonitor.interval: 'often' does not match"),
        ({"replicas": 2}, "Additional properties are not allowed ('replicas' was unexpected)"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy: 'Sometimes' is not one of"),
        ({"gateway": {"replicas": 0}}, "gateway.replicas: 0 is less than the minimum of 1"),
        ({"gateway": {"url": "gateway:8080"}}, "gateway.url: 'gateway:8080' does not match"),
    ],
)  # fmt: skip
def test_a_wrong_value_is_rejected_by_name(change: dict[str, Any], message: str) -> None:
    values = json.loads(json.dumps(VALUES))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            merge(values[key], value)
        else:
            values[key] = value
    found = problems(values)
    assert any(message in p for p in found), found


def merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
