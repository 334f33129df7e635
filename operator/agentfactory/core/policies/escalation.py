"""Escalation rules: which accepted patches a person must look at before they land.

Path globs match any changed path (both sides of a rename); content patterns are searched
in added lines only, so deleting a dangerous line never escalates. Every match is
recorded with its rule, file and line.

Agents write the lines the patterns search, so a pattern that backtracks catastrophically
on a crafted line must not stall the operator: each search is bounded in time, and one that
gives up counts as a match (a person looks; the pattern should be simplified), so a rule
costs at most MAX_MATCHES_PER_RULE bounded searches beyond its ordinary ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import regex

from agentfactory.core.globs import first_match
from agentfactory.core.task import EscalationMatch

if TYPE_CHECKING:
    from agentfactory.core.diff import Patch
    from agentfactory.core.factory import EscalationRule

#: Matches kept per rule: enough to show a person, small enough for a status. The cap is
#: per rule so that a noisy rule never hides another rule (a Park behind a RequireApproval).
MAX_MATCHES_PER_RULE = 10
#: How long one content pattern may search one added line.
SEARCH_SECONDS = 0.5


def evaluate_escalation(rules: list[EscalationRule], patch: Patch) -> list[EscalationMatch]:
    """The matches of *rules* on *patch*, in rule order, at most 10 per rule."""
    matches: list[EscalationMatch] = []
    for rule in rules:
        matches.extend(_rule_matches(rule, patch)[:MAX_MATCHES_PER_RULE])
    return matches


def _rule_matches(rule: EscalationRule, patch: Patch) -> list[EscalationMatch]:
    matches: list[EscalationMatch] = []
    patterns = [regex.compile(p) for p in rule.content_patterns]
    for change in patch.files:
        path_hit = next((p for p in change.paths if first_match(rule.paths, p)), None)
        if path_hit is not None:
            matches.append(EscalationMatch(rule=rule.name, action=rule.action, file=path_hit))
        for line in change.added:
            if len(matches) >= MAX_MATCHES_PER_RULE:
                return matches
            hit = _search(patterns, line.text)
            if hit is None:
                continue
            text = line.text[:200] if hit == "" else f"{line.text[:120]} [{hit}]"
            matches.append(EscalationMatch(rule=rule.name, action=rule.action, file=change.path,
                                           line=line.number, text=text))  # fmt: skip
        if len(matches) >= MAX_MATCHES_PER_RULE:
            break
    return matches


def _search(patterns: list[regex.Pattern[str]], text: str) -> str | None:
    """None when no pattern matches *text*; "" when one does; why, when a search gave up."""
    for index, pattern in enumerate(patterns):
        try:
            if pattern.search(text, timeout=SEARCH_SECONDS):
                return ""
        except TimeoutError:
            return (f"contentPatterns[{index}] gave up after {SEARCH_SECONDS} s on this line and"
                    " counts as a match; simplify the pattern")  # fmt: skip
    return None
