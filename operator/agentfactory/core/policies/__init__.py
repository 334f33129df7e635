"""Pure policies the pipeline applies to patches: guardrails and escalation rules."""

from __future__ import annotations
