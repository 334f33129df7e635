"""JSON merge patches (RFC 7386), computed: the patch that turns one document into another.

A merge patch merges objects key by key, so a key the new document lacks must be sent as
null, at every depth; sending the new document as it is would leave such keys behind on the
server (a phase count that went to zero, a cleared field of a nested object).
"""

from __future__ import annotations

from typing import Any


def merge_patch(old: Any, new: Any) -> Any:
    """The merge patch that turns *old* into *new* (`{}` when they are equal). Lists and
    scalars are replaced whole, as RFC 7386 does; *new* must hold no nulls."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = dict.fromkeys(old.keys() - new.keys())
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch
