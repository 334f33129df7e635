"""Allows ``python -m agentfactory``."""

from __future__ import annotations

from agentfactory.cli import main

raise SystemExit(main())
