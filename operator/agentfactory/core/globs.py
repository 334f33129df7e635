"""Repository path globs: validation, matching, and overlap between two globs.

One semantic everywhere (escalation paths, protected paths, scopes, path locks): a glob is
matched against the whole repository-relative path with `/` separators; `*` and `?`
never cross a `/`; `[abc]`/`[!abc]` are character classes; `**` as a whole segment
spans any number of directories (`docs/**` is everything under `docs`, `**/*.py` any
Python file). There is no brace expansion.

Overlap (can one path match both globs?) decides whether two tasks' scopes may run at once.
It is exact for literals, `?`, `*` and `**`, and errs towards "overlaps" for negated
or very wide character classes: a false overlap only serialises two tasks; a missed one
would let them edit the same file.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from collections.abc import Sequence

GLOBSTAR = "**"


@dataclass(frozen=True)
class _Char:
    """One character position of a segment: a literal, `?`, `*` or a class."""

    kind: str  # "lit", "any", "star", "class"
    chars: frozenset[str] = frozenset()
    negated: bool = False


_Segment = tuple[_Char, ...] | None  # None stands for a `**` segment


class GlobError(ValueError):
    """A glob that cannot be used; the message says why and how to fix it."""


def _parse_class(segment: str, start: int) -> tuple[_Char, int]:
    end = segment.find(
        "]", start + 2 if segment[start + 1 : start + 2] in ("!", "^") else start + 1
    )
    if end == -1:
        raise GlobError("unclosed '[' character class; close it with ']' or remove the '['")
    body = segment[start + 1 : end]
    negated = body[:1] in ("!", "^")
    if negated:
        body = body[1:]
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = ord(body[i]), ord(body[i + 2])
            if low > high:
                raise GlobError(
                    f"character range '{body[i : i + 3]}' is reversed; write it low to high"
                )
            chars.update(chr(c) for c in range(low, min(high, low + 512) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return _Char("class", frozenset(chars), negated), end + 1


def _parse_segment(segment: str) -> tuple[_Char, ...]:
    out: list[_Char] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            if i + 1 < len(segment) and segment[i + 1] == "*":
                raise GlobError(
                    f"'**' must be a whole path segment, not part of '{segment}';"
                    " write 'dir/**/name' or use a single '*'"
                )
            out.append(_Char("star"))
            i += 1
        elif ch == "?":
            out.append(_Char("any"))
            i += 1
        elif ch == "[":
            cls, i = _parse_class(segment, i)
            out.append(cls)
        else:
            out.append(_Char("lit", frozenset(ch)))
            i += 1
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def parse_glob(pattern: str) -> tuple[_Segment, ...]:
    """Parse *pattern* into segments, raising :class:`GlobError` with the fix."""
    if not pattern:
        raise GlobError("glob is empty; write a repository path such as 'src/**'")
    if "\\" in pattern:
        raise GlobError("backslashes are not allowed; separate directories with '/'")
    if pattern.startswith("/"):
        raise GlobError("globs are relative to the repository root; drop the leading '/'")
    if pattern.endswith("/"):
        raise GlobError(f"trailing '/'; to mean everything below, write '{pattern}**'")
    segments: list[_Segment] = []
    for part in pattern.split("/"):
        if part == "":
            raise GlobError("empty path segment ('//'); remove the doubled '/'")
        if part in (".", ".."):
            raise GlobError(f"'{part}' segments are not allowed; write the path from the root")
        segments.append(None if part == GLOBSTAR else _parse_segment(part))
    return tuple(segments)


def check_glob(value: str) -> str:
    """Pydantic validator: *value* must be a usable glob."""
    try:
        parse_glob(value)
    except GlobError as exc:
        raise PydanticCustomError(
            "glob", "invalid glob '{glob}': {error}", {"glob": value, "error": str(exc)}
        ) from None
    return value


Glob = Annotated[str, AfterValidator(check_glob)]


def _char_regex(c: _Char) -> str:
    if c.kind == "lit":
        return re.escape(next(iter(c.chars)))
    if c.kind == "any":
        return "[^/]"
    if c.kind == "star":
        return "[^/]*"
    body = "".join(re.escape(ch) for ch in sorted(c.chars))
    return f"[^/{body}]" if c.negated else f"[{body}]"


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """The anchored regular expression equivalent to *pattern*."""
    segments = parse_glob(pattern)
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment is None:
            # A trailing ** means "one or more segments below"; elsewhere zero or more dirs.
            out.append(".+" if last else "(?:[^/]+/)*")
        else:
            out.append("".join(_char_regex(c) for c in segment) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def glob_match(pattern: str, path: str) -> bool:
    """Whether repository path *path* matches *pattern*."""
    return compile_glob(pattern).match(path) is not None


def first_match(patterns: Sequence[str], path: str) -> str | None:
    """The first of *patterns* that matches *path*, or None."""
    for pattern in patterns:
        if glob_match(pattern, path):
            return pattern
    return None


def _chars_compatible(a: _Char, b: _Char) -> bool:
    if a.kind == "any" or b.kind == "any":
        return True
    if a.kind == "lit" and b.kind == "lit":
        return a.chars == b.chars
    if a.kind == "class" and b.kind == "class":
        if a.negated or b.negated:
            return True  # conservative: some character almost always fits both
        return bool(a.chars & b.chars)
    cls, lit = (a, b) if a.kind == "class" else (b, a)
    return (next(iter(lit.chars)) in cls.chars) != cls.negated


def _segments_overlap(a: tuple[_Char, ...], b: tuple[_Char, ...]) -> bool:
    @functools.cache
    def inter(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        a_star = i < len(a) and a[i].kind == "star"
        b_star = j < len(b) and b[j].kind == "star"
        if a_star and (inter(i + 1, j) or (j < len(b) and inter(i, j + 1))):
            return True
        if b_star and (inter(i, j + 1) or (i < len(a) and inter(i + 1, j))):
            return True
        if a_star or b_star or i == len(a) or j == len(b):
            return False
        return _chars_compatible(a[i], b[j]) and inter(i + 1, j + 1)

    return inter(0, 0)


def globs_overlap(first: str, second: str) -> bool:
    """Whether some repository path could match both globs."""
    a, b = parse_glob(first), parse_glob(second)

    @functools.cache
    def inter(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        a_seg = a[i] if i < len(a) else ()
        b_seg = b[j] if j < len(b) else ()
        if i < len(a) and a_seg is None and (inter(i + 1, j) or (j < len(b) and inter(i, j + 1))):
            return True
        if j < len(b) and b_seg is None and (inter(i, j + 1) or (i < len(a) and inter(i + 1, j))):
            return True
        if a_seg is None or b_seg is None or i == len(a) or j == len(b):
            return False
        return _segments_overlap(a_seg, b_seg) and inter(i + 1, j + 1)

    return inter(0, 0)


def scopes_overlap(first: Sequence[str], second: Sequence[str]) -> bool:
    """Whether two lists of globs (two tasks' scopes) share any path."""
    return any(globs_overlap(a, b) for a in first for b in second)
