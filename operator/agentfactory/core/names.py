"""Kubernetes name rules, shared by the resource models.

Factory and task names are restricted to DNS-1123 labels (63 characters), stricter than
Kubernetes' 253-character object names, because they are used as label values, in pod names
(`<task>-<stage>-<attempt>`) and in branch names.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_LABEL_RE = re.compile(DNS1123_LABEL)
MAX_NAME_LENGTH = 63


def check_name(value: str) -> str:
    """Return *value* when it is a DNS-1123 label, else raise a message naming the fix."""
    if not value:
        raise PydanticCustomError(
            "k8s_name", "name is empty; use lowercase letters, digits and '-'"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise PydanticCustomError(
            "k8s_name",
            "{value} is {length} characters long; use at most 63",
            {"value": repr(value), "length": len(value)},
        )
    if not _LABEL_RE.match(value):
        raise PydanticCustomError(
            "k8s_name",
            "{value} is not a valid Kubernetes name; use lowercase letters, digits and '-',"
            " starting and ending with a letter or digit (for example 'add-webhook')",
            {"value": repr(value)},
        )
    return value


#: A DNS-1123 label; the schema carries the same rule so the API server enforces it too.
K8sName = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema({"type": "string", "pattern": DNS1123_LABEL, "maxLength": MAX_NAME_LENGTH}),
]
