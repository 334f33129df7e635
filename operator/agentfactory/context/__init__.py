"""Context selection: the files an agent reads first, ranked by a retrieval engine (BM25, a
code graph, outlines of large files) over an index cached per commit."""

from __future__ import annotations

from agentfactory.context.repository import NotARepositoryError, Repository, estimate_tokens
from agentfactory.context.select import CONSTITUTION_FILES, Pick, Selection, select_context

__all__ = [
    "CONSTITUTION_FILES",
    "NotARepositoryError",
    "Pick",
    "Repository",
    "Selection",
    "estimate_tokens",
    "select_context",
]
