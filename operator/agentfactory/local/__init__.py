"""The local factory: the core's pipeline run on one machine with local sandboxes and a git
forge (`agentfactory local`)."""

from __future__ import annotations
