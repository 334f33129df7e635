"""The agent runner: one stage's agent session, from the handoff contract to one result.

Adapters around the core: `workspace` (confined file, search, command and git tools),
`tools` (their schemas and dispatch per role), `llm` (the anthropic SDK, or a labelled
replay), `runner` (the bounded tool loop). Nothing here pushes, merges or holds a
credential that can: the operator does that after the guardrails.
"""

from __future__ import annotations
