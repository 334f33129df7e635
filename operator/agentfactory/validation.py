"""Offline validation of FactorySpec and AgentTask manifests, with messages people can act on.

Every problem prints as ``file: Kind/name: field.path: what is wrong; how to fix it``. Pydantic
reports what is wrong; this module adds where (the camelCase path users wrote) and the fix
(a hint per error type, the allowed values, the closest known field name for a typo).
Cross-resource checks (dependency cycles, references to tasks or factories not given) run
over all the files together.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from agentfactory.core.common import (
    KEY_PATTERN,
    LOGIN_PATTERN,
    QUANTITY_PATTERN,
    SHA_PATTERN,
)
from agentfactory.core.factory import FactorySpec
from agentfactory.core.scheduler import find_cycles
from agentfactory.core.task import AgentTask

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pydantic_core import ErrorDetails

Resource = FactorySpec | AgentTask
MODELS: dict[str, type[FactorySpec] | type[AgentTask]] = {
    "FactorySpec": FactorySpec,
    "AgentTask": AgentTask,
}
#: Error types whose message already says what is wrong and how to fix it.
_OWN_MESSAGES = {
    "k8s_name", "glob", "regex", "duplicate", "credentials", "cidr", "port", "ci_source",
    "required_checks", "intake", "escalation_rule", "login", "blank", "self_dependency",
}  # fmt: skip
_PATTERN_HINTS = {
    KEY_PATTERN: "use letters, digits, '.', '_' or '-', at most 63 (for example 'unit-tests')",
    LOGIN_PATTERN: "write a login such as 'alice' or a team such as '@org/team'",
    QUANTITY_PATTERN: "write a Kubernetes quantity such as '500m' or '2Gi'",
    SHA_PATTERN: "write a full 40-character lowercase commit SHA",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest."""

    file: str
    resource: str
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}: {self.resource}: {self.path}: {prefix}{self.message}"


@dataclass(frozen=True)
class Loaded:
    """A manifest that validated."""

    file: str
    resource: Resource

    @property
    def ref(self) -> str:
        return f"{self.resource.kind}/{self.resource.metadata.name}"


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def _known_fields(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names (aliases) allowed at *loc*'s parent, for did-you-mean hints."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part), None
        )
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _kind_name(value: Any) -> str:
    return {
        dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number",
        bool: "true/false", type(None): "empty",
    }.get(type(value), type(value).__name__)  # fmt: skip


def describe(error: ErrorDetails, model: type[BaseModel]) -> tuple[str, str]:
    """The (field path, message with fix) for one pydantic error."""
    loc = list(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind in _OWN_MESSAGES:
        field = ctx.get("field")
        if field:
            loc += str(field).split(".")
        return _format_loc(loc), error["msg"]
    if kind == "missing":
        return _format_loc(loc), f"required field {str(loc[-1])!r} is missing; add it"
    if kind == "extra_forbidden":
        known = _known_fields(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return _format_loc(loc), f"unknown field {str(loc[-1])!r}; remove it ({hint})"
    hints = {
        "literal_error": f"is {value!r}; use one of {ctx.get('expected')}",
        "enum": f"is {value!r}; use one of {ctx.get('expected')}",
        "int_parsing": f"is {value!r}, not a whole number; write an integer such as 3",
        "int_type": f"is {_kind_name(value)}, not a whole number; write an integer such as 3",
        "int_from_float": f"is {value!r}; write a whole number",
        "float_parsing": f"is {value!r}, not a number; write a number such as 2.5",
        "float_type": f"is {_kind_name(value)}, not a number; write a number such as 2.5",
        "bool_parsing": f"is {value!r}; write true or false",
        "bool_type": f"is {_kind_name(value)}; write true or false",
        "string_type": f"is {_kind_name(value)}, not text; write a string (quote it)",
        "list_type": f"is {_kind_name(value)}, not a list; write a YAML list ('- item')",
        "model_type": f"is {_kind_name(value)}, not a mapping; write 'field: value' lines",
        "model_attributes_type": f"is {_kind_name(value)}, not a mapping; write 'field: value'",
        "dict_type": f"is {_kind_name(value)}, not a mapping; write 'key: value' lines",
        "greater_than_equal": f"is {value!r}; use a value of at least {ctx.get('ge')}",
        "greater_than": f"is {value!r}; use a value greater than {ctx.get('gt')}",
        "less_than_equal": f"is {value!r}; use a value of at most {ctx.get('le')}",
        "less_than": f"is {value!r}; use a value less than {ctx.get('lt')}",
        "string_too_short": f"is too short; write at least {ctx.get('min_length')} character(s)",
        "string_too_long": f"is longer than {ctx.get('max_length')} characters; shorten it",
        "too_short": f"has {ctx.get('actual_length')} entries; give at least"
        f" {ctx.get('min_length')}",
        "too_long": f"has {ctx.get('actual_length')} entries; give at most {ctx.get('max_length')}",
        "string_pattern_mismatch": f"{value!r} is not allowed here; "
        + _PATTERN_HINTS.get(str(ctx.get("pattern")), f"match the pattern {ctx.get('pattern')}"),
        "datetime_from_date_parsing": f"is {value!r}; write an RFC 3339 time",
        "datetime_parsing": f"is {value!r}; write an RFC 3339 time",
    }
    if kind in hints:
        return _format_loc(loc), hints[kind]
    return _format_loc(loc), f"{error['msg']}; fix the value"


def validate_document(file: str, index: int, doc: Any) -> tuple[Loaded | None, list[Problem]]:
    """Validate one YAML document."""
    if not isinstance(doc, dict):
        return None, [
            Problem(
                file,
                f"document {index + 1}",
                "(document)",
                f"is {_kind_name(doc)}; a manifest is a mapping with apiVersion, kind,"
                " metadata and spec",
            )
        ]
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    shown = name if not isinstance(name, str) or name.isprintable() else repr(name)
    ref = f"{kind or '?'}/{shown or f'(unnamed, document {index + 1})'}"
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None, [
            Problem(
                file,
                ref,
                "kind",
                f"is {kind!r}; use one of {sorted(MODELS)}",
            )
        ]
    try:
        resource = model.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path, message = describe(error, model)
            problems.append(Problem(file, ref, path, message))
        return None, problems
    return Loaded(file, resource), []


def load_file(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """The YAML documents in *path* (empty documents skipped), or the parse problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), "-", "(file)", f"cannot be read: {exc}; check the path")]
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [Problem(str(path), "-", where, f"invalid YAML: {problem}; fix the syntax")]
    return [(index, doc) for index, doc in enumerate(docs) if doc is not None], []


def expand(paths: Iterable[str]) -> list[Path]:
    """Files named, plus every .yaml/.yml file inside directories named, in order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


def cross_check(loaded: list[Loaded]) -> list[Problem]:
    """Problems only visible across resources: duplicates, cycles, dangling references."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for item in loaded:
        if item.ref in seen:
            problems.append(
                Problem(item.file, item.ref, "metadata.name",
                        f"is also defined in {seen[item.ref]}; give each resource its own name")
            )  # fmt: skip
        seen.setdefault(item.ref, item.file)
    tasks: dict[str, tuple[Loaded, AgentTask]] = {
        item.resource.metadata.name: (item, item.resource)
        for item in loaded
        if isinstance(item.resource, AgentTask)
    }
    factories = {i.resource.metadata.name for i in loaded if isinstance(i.resource, FactorySpec)}
    graph = {name: task.spec.depends_on for name, (_, task) in tasks.items()}
    for cycle in find_cycles(graph):
        chain = " -> ".join(cycle)
        for name in cycle[:-1]:
            item = tasks[name][0]
            problems.append(
                Problem(item.file, item.ref, "spec.dependsOn",
                        f"is part of the dependency cycle {chain}; remove one dependsOn entry")
            )  # fmt: skip
    for item, task in tasks.values():
        if factories and task.spec.factory_ref not in factories:
            problems.append(
                Problem(item.file, item.ref, "spec.factoryRef",
                        f"names {task.spec.factory_ref!r}, which is not among the given"
                        f" FactorySpecs {sorted(factories)}; fix the name or apply that factory",
                        severity="warning")
            )  # fmt: skip
        for dep in task.spec.depends_on:
            if dep not in tasks:
                problems.append(
                    Problem(item.file, item.ref, "spec.dependsOn",
                            f"names {dep!r}, which is not among the given tasks; the task waits"
                            " in Pending until it exists", severity="warning")
                )  # fmt: skip
    return problems


def validate_paths(paths: Iterable[str]) -> tuple[list[Loaded], list[Problem]]:
    """Validate every manifest in *paths* (files or directories)."""
    loaded: list[Loaded] = []
    problems: list[Problem] = []
    for path in expand(paths):
        docs, load_problems = load_file(path)
        problems += load_problems
        for index, doc in docs:
            item, doc_problems = validate_document(str(path), index, doc)
            problems += doc_problems
            if item is not None:
                loaded.append(item)
    return loaded, problems + cross_check(loaded)
