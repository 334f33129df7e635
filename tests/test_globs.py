"""Repository globs: matching, overlap (the path-lock test), and rejection of bad globs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfactory.core.globs import GlobError, glob_match, globs_overlap, parse_glob

MATCHES = [
    ("src/**", "src/a.py", True),
    ("src/**", "src/a/b/c.py", True),
    ("src/**", "src", False),
    ("src/**", "lib/src/a.py", False),
    ("**/*.py", "a.py", True),
    ("**/*.py", "x/y/a.py", True),
    ("**/*.py", "x/y/a.pyc", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/a/b.py", False),
    ("src/**/test_*.py", "src/test_a.py", True),
    ("src/**/test_*.py", "src/x/y/test_a.py", True),
    (".github/workflows/**", ".github/workflows/ci.yml", True),
    ("**/*.test.[jt]s", "web/app.test.ts", True),
    ("**/*.test.[jt]s", "web/app.test.cs", False),
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file/.txt", False),
    ("[!a]*", "bcd", True),
    ("[!a]*", "abc", False),
    ("CODEOWNERS", "CODEOWNERS", True),
    ("CODEOWNERS", "docs/CODEOWNERS", False),
    ("a+b(c).py", "a+b(c).py", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCHES)
def test_glob_match(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


OVERLAPS = [
    ("src/*.py", "src/*.md", False),
    ("src/**", "**/*.md", True),
    ("a/b/**", "a/c/**", False),
    ("src/a*.py", "src/*b.py", True),
    ("src/api/**", "src/**/handlers.py", True),
    ("docs/**", "src/**", False),
    ("**", "anything/at/all", True),
    ("src/x.py", "src/x.py", True),
    ("src/x.py", "src/y.py", False),
    ("src/[ab].py", "src/[cd].py", False),
    ("src/[ab].py", "src/?.py", True),
    ("tests/test_a.py", "tests/**", True),
]


@pytest.mark.parametrize(("first", "second", "expected"), OVERLAPS)
def test_globs_overlap_is_exact_for_common_globs(first: str, second: str, expected: bool) -> None:
    assert globs_overlap(first, second) is expected
    assert globs_overlap(second, first) is expected, "overlap must be symmetric"


segment = st.sampled_from(["a", "b", "ab", "*", "a*", "*b", "?", "**", "x.py", "*.py"])
concrete = st.sampled_from(["a", "b", "ab", "ba", "x.py", "a.py", "bb"])


@given(st.lists(segment, min_size=1, max_size=4), st.lists(segment, min_size=1, max_size=4),
       st.lists(concrete, min_size=1, max_size=5))  # fmt: skip
def test_a_path_matching_both_globs_implies_they_overlap(
    first: list[str], second: list[str], path: list[str]
) -> None:
    a, b, p = "/".join(first), "/".join(second), "/".join(path)
    if glob_match(a, p) and glob_match(b, p):
        assert globs_overlap(a, b), f"{a!r} and {b!r} both match {p!r}"


BAD = [
    ("", "empty"),
    ("/src/**", "leading '/'"),
    ("src/", "trailing '/'"),
    ("src//a", "'//'"),
    ("../etc/passwd", "'..' segments"),
    ("src/a**", "whole path segment"),
    ("src/[ab", "unclosed '['"),
    ("src\\a.py", "backslashes"),
    ("src/[z-a].py", "reversed"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD)
def test_bad_globs_are_rejected_with_the_fix(pattern: str, message: str) -> None:
    with pytest.raises(GlobError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_glob(pattern)
