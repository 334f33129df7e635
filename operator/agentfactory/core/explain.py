"""Pydantic validation errors as people can act on them: the field path they wrote
(camelCase, `rules[0]`), what is wrong, and how to fix it.

Used by `agentfactory validate` and by the operator's conditions, so a bad manifest reads the
same offline and on a cluster.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agentfactory.core.common import KEY_PATTERN, LOGIN_PATTERN, QUANTITY_PATTERN, SHA_PATTERN

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

#: Error types whose message already says what is wrong and how to fix it.
_OWN_MESSAGES = {
    "k8s_name", "glob", "regex", "duplicate", "credentials", "cidr", "port", "ci_source",
    "required_checks", "intake", "escalation_rule", "login", "blank", "self_dependency",
    "spec_too_large", "control_character", "prefix_names_base", "url_credentials", "clear_text",
    "no_checks", "engine_without_image", "command_without_image_engine",
}  # fmt: skip
_PATTERN_HINTS = {
    KEY_PATTERN: "use letters, digits, '.', '_' or '-', at most 63 (for example 'unit-tests')",
    LOGIN_PATTERN: "write a login such as 'alice', a team such as '@org/team' or a user name"
    " such as 'alice@example.com'",
    QUANTITY_PATTERN: "write a Kubernetes quantity such as '500m' or '2Gi'",
    SHA_PATTERN: "write a full 40-character lowercase commit SHA",
}


def format_loc(loc: Sequence[int | str]) -> str:
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


def kind_name(value: Any) -> str:
    return {
        dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number",
        bool: "true/false", type(None): "empty",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _shown(value: Any) -> str:
    """Text as the user wrote it, anything else by its kind."""
    return f"the text {value!r}" if isinstance(value, str) else kind_name(value)


def _number_fix(value: Any, example: str) -> str:
    """The fix for text where a number belongs: the same digits unquoted, if they are one."""
    try:
        float(value)
    except (TypeError, ValueError):
        return f"write {example}"
    return f"write {str(value).strip()} without quotes"


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
        return format_loc(loc), error["msg"]
    if kind == "missing":
        return format_loc(loc), f"required field {str(loc[-1])!r} is missing; add it"
    if kind == "extra_forbidden":
        known = _known_fields(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
        return format_loc(loc), f"unknown field {str(loc[-1])!r}; remove it ({hint})"
    hints = {
        "literal_error": f"is {value!r}; use one of {ctx.get('expected')}",
        "enum": f"is {value!r}; use one of {ctx.get('expected')}",
        "int_parsing": f"is {value!r}, not a whole number; write an integer such as 3",
        "int_type": f"is {_shown(value)}, not a whole number; "
        + _number_fix(value, "an integer such as 3"),
        "int_from_float": f"is {value!r}; write a whole number",
        "float_parsing": f"is {value!r}, not a number; write a number such as 2.5",
        "float_type": f"is {_shown(value)}, not a number; "
        + _number_fix(value, "a number such as 2.5"),
        "bool_parsing": f"is {value!r}; write true or false",
        "bool_type": f"is {_shown(value)}; write true or false without quotes",
        "string_type": f"is {kind_name(value)}, not text; write a string (quote it)",
        "list_type": f"is {kind_name(value)}, not a list; write a YAML list ('- item')",
        "model_type": f"is {kind_name(value)}, not a mapping; write 'field: value' lines",
        "model_attributes_type": f"is {kind_name(value)}, not a mapping; write 'field: value'",
        "dict_type": f"is {kind_name(value)}, not a mapping; write 'key: value' lines",
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
        return format_loc(loc), hints[kind]
    return format_loc(loc), f"{error['msg']}; fix the value"


def explain(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every error of *exc* as `path: message`, paths prefixed with *prefix*."""
    out = []
    for error in exc.errors(include_url=False):
        path, message = describe(error, model)
        if path == "(document)" and prefix:  # the model as a whole: "spec", not "spec.(document)"
            out.append(f"{prefix.rstrip('.')}: {message}")
        else:
            out.append(f"{prefix}{path}: {message}")
    return out
