"""Forges: where branches live and merges happen. `git` (any remote or a local bare
repository) now; GitHub through PyGithub later. Every operation is idempotent."""

from __future__ import annotations
