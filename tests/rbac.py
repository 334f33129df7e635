"""The operator's RBAC as the chart's README documents it: a table the chart's installed Roles
are held to, so the docs say what is granted. (What the operator needs is proven by the real
API server's authorizer: its tests run under the chart's Role and find no 403.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).parent.parent / "charts" / "agentfactory" / "README.md"
Grant = tuple[str, str, str]  # (API group, resource, verb)


def _names(cell: str) -> list[str]:
    return [name.strip('"') for name in re.findall(r"`([^`]*)`", cell)]


def documented(*, peering: bool = False, cluster_wide: bool = False) -> set[Grant]:
    """The grants of the README's RBAC table for an install with these settings."""
    text = README.read_text().split("## RBAC", 1)[1].split("\n## ", 1)[0]
    scope = "clusterWide" if cluster_wide else "namespaced"
    grants: set[Grant] = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue  # not a rule row
        groups, resources, verbs, when = map(str, cells[:4])
        if when != "always" and not (peering and when == f"peering, {scope}"):
            continue
        grants |= {(g, r, v) for g in _names(groups) for r in _names(resources)
                   for v in _names(verbs)}  # fmt: skip
    assert grants, "the README's RBAC table is missing"
    return grants


def granted(rules: list[dict[str, Any]]) -> set[Grant]:
    """The grants of a Role's or ClusterRole's rules."""
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}  # fmt: skip
