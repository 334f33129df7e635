"""Computed merge patches, checked against RFC 7386's own application rule."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agentfactory.core.mergepatch import merge_patch


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386, section 2, as written."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


KEYS = st.sampled_from(["a", "b", "c", "byPhase", "Pending"])
SCALARS = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.booleans())
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, DOCS, max_size=4)


@given(OBJECTS, OBJECTS)
def test_the_patch_turns_the_old_document_into_the_new(old: Any, new: Any) -> None:
    assert apply(old, merge_patch(old, new)) == new


@given(OBJECTS)
def test_equal_documents_need_an_empty_patch(doc: Any) -> None:
    assert merge_patch(doc, doc) == {}


def test_a_count_that_went_away_is_sent_as_null() -> None:
    old = {"tasks": {"byPhase": {"Pending": 1}, "total": 1}}
    new = {"tasks": {"byPhase": {"Planning": 1}, "total": 1}}
    assert merge_patch(old, new) == {"tasks": {"byPhase": {"Pending": None, "Planning": 1}}}
