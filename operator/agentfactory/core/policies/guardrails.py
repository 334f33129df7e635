"""Guardrails: what no patch may do, whatever the agent says.

Checked on every implementer patch before it is pushed. A violation sends the patch back
to the implementer (spending a retry) with the violations as its objections.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

from agentfactory.core.globs import first_match
from agentfactory.core.task import GuardrailViolation

if TYPE_CHECKING:
    from agentfactory.core.diff import FileChange, Patch
    from agentfactory.core.factory import Guardrails

#: Lines that define a test (Python, JS/TS, Go).
_TEST_DEF = re.compile(
    r"^\s*(?:async\s+)?def\s+(test\w*)\s*\("
    r"|^\s*(?:it|test)\s*\(\s*(['\"`])(.+?)\2"
    r"|^\s*func\s+(Test\w*)\s*\("
)
#: Lines that assert (Python, JS/TS, Go's testing idioms).
_ASSERTION = re.compile(
    r"\bassert\w*\b|\bexpect\s*\(|\bself\.assert\w+\s*\(|\bpytest\.raises\b"
    r"|\bt\.(?:Error|Errorf|Fatal|Fatalf|Fail|FailNow)\b"
)
#: Lines that skip or neutralise a test.
_SKIP = re.compile(
    r"@pytest\.mark\.(?:skip|skipif|xfail)\b|\bpytest\.(?:skip|xfail)\s*\("
    r"|@unittest\.(?:skip|skipIf|skipUnless|expectedFailure)\b"
    r"|\b(?:it|test|describe)\.(?:skip|todo)\s*\(|\bx(?:it|describe|test)\s*\("
    r"|\bt\.Skip(?:f|Now)?\s*\("
)


def _test_names(lines: list[str]) -> set[str]:
    names: set[str] = set()
    for text in lines:
        match = _TEST_DEF.match(text)
        if match:
            names.add(match.group(1) or match.group(3) or match.group(4))
    return names


def _weakening(change: FileChange) -> list[GuardrailViolation]:
    if change.status == "deleted":
        return [
            GuardrailViolation(
                rule="test-weakening",
                file=change.path,
                message=f"deletes test file {change.path}; keep it, or change the tests only"
                " when the goal asks for it",
            )
        ]
    found: list[GuardrailViolation] = []
    removed_tests = _test_names([line.text for line in change.removed]) - _test_names(
        [line.text for line in change.added]
    )
    for name in sorted(removed_tests):
        found.append(
            GuardrailViolation(
                rule="test-weakening",
                file=change.path,
                message=f"removes test {name!r}; restore it",
            )
        )
    removed_asserts = sum(1 for line in change.removed if _ASSERTION.search(line.text))
    added_asserts = sum(1 for line in change.added if _ASSERTION.search(line.text))
    if removed_asserts > added_asserts:
        found.append(
            GuardrailViolation(
                rule="test-weakening",
                file=change.path,
                message=f"removes {removed_asserts} assertions and adds {added_asserts};"
                " keep the assertions and fix the code instead",
            )
        )
    for line in change.added:
        if _SKIP.search(line.text):
            found.append(
                GuardrailViolation(
                    rule="test-weakening",
                    file=change.path,
                    line=line.number,
                    message=f"adds a skip: {line.text.strip()[:120]!r}; make the test pass"
                    " instead of skipping it",
                )
            )
    return found


def _leaves_repository(path: str, target: str) -> bool:
    """Whether a link at *path* to *target* resolves outside the repository or into .git
    (whoever checks the repository out would follow it: CI, a developer, the next agent)."""
    if posixpath.isabs(target):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    first = resolved.split("/")[0]
    return first in ("..", ".git")


def check_guardrails(
    patch: Patch, guardrails: Guardrails, scope: list[str]
) -> list[GuardrailViolation]:
    """Every guardrail *patch* breaks, empty when it may proceed."""
    if not patch.files:
        return [
            GuardrailViolation(
                rule="empty-patch",
                message="the patch changes nothing; make the change the goal asks for",
            )
        ]
    found: list[GuardrailViolation] = []
    for change in patch.files:
        for path in change.paths:
            protected = first_match(guardrails.protected, path)
            if protected:
                found.append(
                    GuardrailViolation(
                        rule="protected-path",
                        file=path,
                        message=f"{path} is protected by {protected!r}; leave it unchanged",
                    )
                )
            elif first_match(scope, path) is None:
                found.append(
                    GuardrailViolation(
                        rule="out-of-scope",
                        file=path,
                        message=f"{path} is outside scope.paths {scope}; change only files"
                        " in scope",
                    )
                )
        if change.symlink is not None and _leaves_repository(change.path, change.symlink):
            found.append(
                GuardrailViolation(
                    rule="symlink-out",
                    file=change.path,
                    message=f"{change.path} is a symlink to {change.symlink!r}, outside the"
                    " repository (or into .git); link only within it, or add the file itself",
                )
            )
        if guardrails.forbid_test_weakening and any(
            first_match(guardrails.test_paths, path) for path in change.paths
        ):
            found.extend(_weakening(change))
    if len(patch.files) > guardrails.max_changed_files:
        found.append(
            GuardrailViolation(
                rule="max-changed-files",
                message=f"changes {len(patch.files)} files, more than maxChangedFiles"
                f" {guardrails.max_changed_files}; make a smaller change",
            )
        )
    if patch.changed_lines > guardrails.max_changed_lines:
        found.append(
            GuardrailViolation(
                rule="max-changed-lines",
                message=f"changes {patch.changed_lines} lines, more than maxChangedLines"
                f" {guardrails.max_changed_lines}; make a smaller change",
            )
        )
    return found
