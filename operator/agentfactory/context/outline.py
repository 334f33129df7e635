"""A large file's outline: every definition's header (decorators, signature, the first line of
its docstring), the file's opening lines (imports), and in full the bodies that share the most
of the goal's words; gaps are marked, so the reader knows something was left out."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.context.facts import Entry

#: The opening lines (module docstring, imports) kept before the first definition.
HEAD_LINES = 30
GAP = "⋮"


def outline(text: str, entries: list[Entry], goal: set[str], body_bytes: int) -> tuple[str, int]:
    """The outline of *text*, with as many of the best-matching bodies in full as fit in
    *body_bytes*; returns it and how many bodies it holds."""
    lines = text.splitlines()
    shown: set[int] = set(range(1, min(HEAD_LINES, entries[0].start - 1 if entries else 0) + 1))
    for entry in entries:
        shown.update(range(entry.start, min(entry.end, entry.start + entry.header - 1) + 1))
    # A body matches a goal word it holds anywhere (as a whole word or within an identifier):
    # a substring search, because tokenising every body of every large file costs seconds.
    lower = [line.lower() for line in lines]
    ranked = []
    for entry in entries:
        held = "\n".join(lower[entry.start - 1 : entry.end])
        if hits := sum(word in held for word in goal):
            ranked.append((-hits, entry.end - entry.start, entry))
    bodies, spent = 0, 0
    for _, _, entry in sorted(ranked, key=lambda r: r[:2]):
        body = range(entry.start, entry.end + 1)
        cost = sum(len(lines[n - 1]) + 1 for n in body if n not in shown and n <= len(lines))
        if spent + cost > body_bytes:
            continue
        shown.update(body)
        spent += cost
        bodies += 1
    out: list[str] = []
    last = 0
    for n in sorted(n for n in shown if n <= len(lines)):
        if n != last + 1:
            out.append(GAP)
        out.append(lines[n - 1])
        last = n
    if last < len(lines):
        out.append(GAP)
    return "\n".join(out) + "\n", bodies
