"""Kubernetes name rules, shared by the resource models, and the rule for task branches.

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


_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


def task_branch_refusal(branch: str, base: str, prefix: str) -> str | None:
    """Why a task may not write *branch*, or None when it may. A task's branch is never the
    base branch (or a branch beside or under it), never outside a non-empty prefix, and never a
    name git would read as something else: the forges check this on every push, whatever the
    spec says, so that no unreviewed patch lands where it would be taken for reviewed code."""
    if branch == base or base.startswith(branch + "/") or branch.startswith(base + "/"):
        return f"refusing to write branch '{branch}': it is the base branch {base} or beside it"
    if not prefix:
        return (f"refusing to write branch '{branch}': the branch prefix is empty, so it could"
                f" name any branch; set repository.branchPrefix (such as factory/)")  # fmt: skip
    if not branch.startswith(prefix) or branch == prefix:
        return f"refusing to write branch '{branch}': it is not under the prefix {prefix}"
    if (not _BRANCH_RE.match(branch) or ".." in branch or "//" in branch
            or branch.endswith((".", "/", ".lock")) or "/." in branch):  # fmt: skip
        return f"refusing to write branch '{branch}': not a plain branch name"
    return None
