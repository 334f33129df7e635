"""The index selection ranks with, built once per commit and cached: BM25 over each file's
code-aware words and path, the code graph, which files define which names, and the outlines
of large files.

The cache holds numpy arrays and JSON only (nothing unpickled), in
`$AGENTFACTORY_CACHE_DIR/context/<commit>-v<version>/` (default `~/.cache/agentfactory`). A
working tree with uncommitted changes is indexed afresh each time and never cached.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import astuple, dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import bm25s
import numpy as np

from agentfactory.context.facts import Entry, Facts, facts_of
from agentfactory.context.graph import MAX_DEFINERS, Graph
from agentfactory.context.repository import PROSE_SUFFIXES, TEXT_SUFFIXES, Repository
from agentfactory.context.tokens import code_tokens

#: Raised whenever what the index holds, or how it is built, changes.
VERSION = 3
#: Files with a graph's facts: code, not prose or configuration.
CODE_SUFFIXES = TEXT_SUFFIXES - PROSE_SUFFIXES - {".toml", ".yaml", ".yml", ".json", ".cfg",
                                                  ".ini"}  # fmt: skip
#: A file this large (in tokens) keeps its outline, to be given in its place.
OUTLINE_FROM = 1_500
#: Cached indexes kept; the oldest go first.
KEEP = 32

Source = Literal["built", "cached", "cache"]


def cache_root() -> Path | None:
    """Where indexes are kept, or None where there is no home to keep them in."""
    configured = os.environ.get("AGENTFACTORY_CACHE_DIR")
    if configured:
        return Path(configured)
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no HOME and no passwd entry (an arbitrary uid in a pod)
        return None
    return Path(base) / "agentfactory"


@dataclass
class Index:
    files: list[str]
    lexical: bm25s.BM25
    graph: Graph
    definers: dict[str, list[int]]
    outlines: dict[str, list[Entry]]
    source: Source = "built"

    @classmethod
    def build(cls, repo: Repository) -> Index:
        facts: dict[int, Facts] = {}
        corpus: list[list[str]] = []
        for i, path in enumerate(repo.files):
            text = repo.text(path)
            # The path's words count twice: a file named for the goal's subject usually is it.
            # Binary files are not ranked at all: an agent cannot read them.
            corpus.append(code_tokens(f"{path} {path} {text}") if text else ["\0"])
            if text and PurePosixPath(path).suffix in CODE_SUFFIXES:
                facts[i] = facts_of(path, text, repo.modules, repo.sizes)
        lexical = bm25s.BM25()
        if corpus:
            lexical.index(corpus, show_progress=False)
        definers: dict[str, list[int]] = {}
        for i, fact in facts.items():
            for name in fact.defines:
                definers.setdefault(name, []).append(i)
        graph = Graph.of(facts, repo.files, definers)
        # A name defined in many files names none of them; kept alike, built or cached.
        definers = {n: f for n, f in definers.items() if len(f) <= 2 * MAX_DEFINERS}
        outlines = {
            repo.files[i]: fact.outline
            for i, fact in facts.items()
            if fact.outline and repo.tokens(repo.files[i]) >= OUTLINE_FROM
        }
        return cls(repo.files, lexical, graph, definers, outlines)

    def scores(self, query: list[str]) -> np.ndarray:
        """BM25 of every file for *query* (zeros where no word is known)."""
        known = [t for t in query if t in (self.lexical.vocab_dict or {})]
        if not known or not self.files:
            return np.zeros(len(self.files))
        return np.asarray(self.lexical.get_scores(known), dtype=np.float64)

    def save(self, directory: Path) -> None:
        self.lexical.save(str(directory / "lexical"), show_progress=False)
        g = self.graph
        np.savez(directory / "graph.npz", src=g.src, dst=g.dst, weight=g.weight, kind=g.kind)
        facts = {
            "files": self.files,
            "definers": self.definers,
            "outlines": {p: [astuple(e) for e in es] for p, es in self.outlines.items()},
        }
        (directory / "facts.json").write_text(json.dumps(facts, separators=(",", ":")))

    @classmethod
    def load(cls, directory: Path) -> Index:
        facts = json.loads((directory / "facts.json").read_text())
        with np.load(directory / "graph.npz", allow_pickle=False) as g:
            graph = Graph(g["src"], g["dst"], g["weight"], g["kind"])
        lexical = bm25s.BM25.load(str(directory / "lexical"), show_progress=False)
        outlines = {p: [Entry(*e) for e in es] for p, es in facts["outlines"].items()}
        return cls(facts["files"], lexical, graph, facts["definers"], outlines, "cache")


def index_of(repo: Repository, cache: Path | None) -> Index:
    """The repository's index: from the cache when its commit was indexed before, else built
    (and cached, when the tree is exactly a commit and *cache* is writable)."""
    commit = repo.commit() if cache is not None and repo.files else None
    if cache is None or commit is None:
        return Index.build(repo)
    place = cache / "context" / f"{commit}-v{VERSION}"
    if (place / "facts.json").is_file():
        try:
            index = Index.load(place)
        except (OSError, ValueError, KeyError):
            logging.getLogger(__name__).warning("unreadable context index %s, rebuilt", place)
        else:
            if index.files == repo.files:
                return index
    index = Index.build(repo)
    try:
        _store(index, place)
    except OSError as exc:  # a read-only home (a hardened pod) indexes every time
        logging.getLogger(__name__).debug("context index not cached: %s", exc)
    else:
        index.source = "cached"
    return index


def _store(index: Index, place: Path) -> None:
    place.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=place.parent))
    try:
        index.save(staging)
        shutil.rmtree(place, ignore_errors=True)
        staging.rename(place)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kept = sorted(place.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
