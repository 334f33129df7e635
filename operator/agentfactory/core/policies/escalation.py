"""Escalation rules: which accepted patches a person must look at before they land.

Path globs match any changed path (both sides of a rename); content patterns are searched
in added lines only, so deleting a dangerous line never escalates. Every match is
recorded with its rule, file and line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from agentfactory.core.globs import first_match
from agentfactory.core.task import EscalationMatch

if TYPE_CHECKING:
    from agentfactory.core.diff import Patch
    from agentfactory.core.factory import EscalationRule

#: Matches kept per rule: enough to show a person, small enough for a status. The cap is
#: per rule so that a noisy rule never hides another rule (a Park behind a RequireApproval).
MAX_MATCHES_PER_RULE = 10


def evaluate_escalation(rules: list[EscalationRule], patch: Patch) -> list[EscalationMatch]:
    """The matches of *rules* on *patch*, in rule order, at most 10 per rule."""
    matches: list[EscalationMatch] = []
    for rule in rules:
        matches.extend(_rule_matches(rule, patch)[:MAX_MATCHES_PER_RULE])
    return matches


def _rule_matches(rule: EscalationRule, patch: Patch) -> list[EscalationMatch]:
    matches: list[EscalationMatch] = []
    patterns = [re.compile(p) for p in rule.content_patterns]
    for change in patch.files:
        path_hit = next((p for p in change.paths if first_match(rule.paths, p)), None)
        if path_hit is not None:
            matches.append(EscalationMatch(rule=rule.name, action=rule.action, file=path_hit))
        for line in change.added:
            if any(pattern.search(line.text) for pattern in patterns):
                matches.append(
                    EscalationMatch(
                        rule=rule.name,
                        action=rule.action,
                        file=change.path,
                        line=line.number,
                        text=line.text[:200],
                    )
                )
        if len(matches) >= MAX_MATCHES_PER_RULE:
            break
    return matches
