"""Context selection: which files an agent should read first, within a token budget.

What the task names comes first (the constitution, `context.files`, paths and names the goal
mentions, concrete files in its scope). The rest of the budget goes by rank: BM25 over
code-aware words (the lexical part) plus personalised PageRank over the code graph, seeded
with the named files and the best lexical matches (the graph part). A file larger than a
share of the budget is given as its outline, with the bodies that match the goal in full, so
that more of the right files fit. Every pick says why it is in (its reason and score parts);
named files that do not exist are reported as missing, and files that did not fit as skipped.

Tokens are estimated at four bytes a token (the same estimate everywhere in the project).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

import numpy as np

from agentfactory.context.graph import IMPORTS
from agentfactory.context.index import Index, Source, cache_root, index_of
from agentfactory.context.outline import outline
from agentfactory.context.repository import PROSE_SUFFIXES, Repository, estimate_tokens, is_test
from agentfactory.context.tokens import query_tokens
from agentfactory.core.globs import first_match, parse_glob

if TYPE_CHECKING:
    from collections.abc import Iterable

CONSTITUTION_FILES = ("AGENTS.md", "CLAUDE.md", "CONVENTIONS.md", "CONTRIBUTING.md")
#: Order of the reasons, most important first.
TIERS = ("constitution", "named", "goal", "scope", "ranked")
#: How the two parts of a rank add up (each is first scaled to the best file's).
LEXICAL, GRAPH = 1.0, 1.0
#: Prose that matches as well as code ranks below it: agents change code. Tests, likewise,
#: below the code they test.
PROSE, TESTS = 0.5, 0.8
#: Files seeding the graph from the lexical ranking.
LEXICAL_SEEDS = 10
#: A file ranked below this share of the best one is not related enough to be shown.
FLOOR = 0.01
#: A file larger than this share of the budget is given as its outline, ...
OUTLINE_SHARE = 0.02
#: ... except the best-ranked few, given whole while each fits in a quarter of the budget.
WHOLE_FIRST = 3
#: ... and up to this share of the file's own size goes to the bodies that match the goal.
BODIES_SHARE = 0.1
#: Selection stops when less than this is left of the budget.
MIN_PICK = 50
#: Whether large files, and files that no longer fit whole, are given as their outlines.
OUTLINES = True

Form = Literal["file", "outline"]


@dataclass(frozen=True)
class Pick:
    """A file considered for the context, and why."""

    path: str
    reason: str
    tier: str
    tokens: int
    score: float = 0.0
    #: The whole file, or its outline (definitions' headers and the bodies that match).
    form: Form = "file"
    #: The rank's parts: lexical (BM25, scaled to the best file) and graph (PageRank, ditto).
    parts: dict[str, float] = field(default_factory=dict)
    #: The outline's text, when the file is given as its outline.
    outline: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if k != "outline"}


@dataclass
class Selection:
    """What context selection chose, skipped and could not find."""

    picked: list[Pick] = field(default_factory=list)
    skipped: list[Pick] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    budget_tokens: int = 0
    repo_tokens: int = 0
    #: Where the index came from: built now, built and cached, or read from the cache.
    index: Source = "built"

    @property
    def tokens(self) -> int:
        return sum(pick.tokens for pick in self.picked)

    def as_dict(self) -> dict[str, object]:
        return {
            "budgetTokens": self.budget_tokens,
            "selectedTokens": self.tokens,
            "repositoryTokens": self.repo_tokens,
            "index": self.index,
            "picked": [p.as_dict() for p in self.picked],
            "skipped": [p.as_dict() for p in self.skipped],
            "missing": self.missing,
        }


_IDENTIFIER = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b"
)


def _is_concrete(pattern: str) -> bool:
    return all(seg is not None and all(c.kind == "lit" for c in seg) for seg in parse_glob(pattern))


def _goal_paths(repo: Repository, goal: str) -> tuple[list[str], list[str]]:
    """Files the goal names by path, file name or dotted name (a module, or something in
    one: `pkg.mod.func` names `pkg/mod.py`), and the words that named them."""
    named: list[str] = []
    said: list[str] = []
    for word in re.findall(r"[\w./-]+", goal):
        token = word.strip("./")
        found: list[str] = []
        if token in repo.sizes:
            found = [token]
        elif "." in token and not token.endswith(".py"):
            parts = token.split(".")
            dotted = (".".join(parts[:end]) for end in range(len(parts), 1, -1))
            found = [repo.modules[m] for m in dotted if m in repo.modules][:1]
        if not found and "." in PurePosixPath(token).name:
            found = [p for p in repo.files if p.endswith(f"/{token}")][:3]
        if found:
            named += found
            said.append(word)
    return list(dict.fromkeys(named)), said


def select_context(
    root: Path,
    *,
    goal: str,
    scope: Iterable[str] = (),
    files: Iterable[str] = (),
    budget_tokens: int = 30_000,
    constitution: Iterable[str] = CONSTITUTION_FILES,
    cache: Path | Literal[False] | None = None,
) -> Selection:
    """Choose the files an agent working on *goal* should read first. *cache* is where
    indexes are kept (None: the default place; False: nowhere)."""
    repo = Repository(root)
    index = index_of(repo, cache_root() if cache is None else cache or None)
    selection = Selection(
        budget_tokens=budget_tokens,
        repo_tokens=sum(repo.tokens(p) for p in repo.files),
        index=index.source,
    )
    named: dict[str, tuple[str, str]] = {}

    def name(path: str, tier: str, reason: str) -> None:
        if path in repo.sizes and path not in named:
            named[path] = (tier, reason)

    for path in constitution:
        name(path, "constitution", "project principles every agent reads first")
    for pattern in files:
        matched = [p for p in repo.files if first_match([pattern], p)] if pattern else []
        if not matched:
            selection.missing.append(pattern)
        for path in matched:
            name(path, "named", "named in the task's context.files")
    paths, naming = _goal_paths(repo, goal)
    for path in paths:
        name(path, "goal", "named in the goal")
    for word in dict.fromkeys(_IDENTIFIER.findall(goal)):
        for i in index.definers.get(word, []):
            name(index.files[i], "goal", f"defines {word}, named in the goal")
    scope = list(scope)
    for pattern in scope:
        if _is_concrete(pattern):
            if pattern in repo.sizes:
                name(pattern, "scope", "a file in the task's scope")
            elif not is_test(pattern):
                selection.missing.append(f"{pattern} (in scope; a new file?)")

    # A path the goal names found its file already; as words it would match every file
    # under the same directories. (A dotted name stays: its last parts are words to rank by.)
    words = " ".join(w for w in goal.split() if not any(n in w and "/" in n for n in naming))
    ranking = _rank(index, words, named, scope)
    order = sorted(
        range(len(index.files)),
        key=lambda i: (
            TIERS.index(named.get(index.files[i], ("ranked",))[0]),
            -ranking.total[i],
            is_test(index.files[i]),
            index.files[i],
        ),
    )
    goal_words = set(ranking.words)
    floor = FLOOR * (float(ranking.total.max()) if len(ranking.total) else 0.0)
    used = ranked = 0
    for i in order:
        if budget_tokens - used < MIN_PICK:
            break
        path = index.files[i]
        tier, reason = named.get(path, ("ranked", ""))
        if tier == "ranked":
            if ranking.total[i] < floor:
                break
            reason = ranking.reason(i)
        parts = {"lexical": round(float(ranking.lexical[i]), 4),
                 "graph": round(float(ranking.graph[i]), 4)}  # fmt: skip
        pick = Pick(path, reason, tier, repo.tokens(path), round(float(ranking.total[i]), 4),
                    parts=parts)  # fmt: skip
        first = tier != "ranked" or ranked < WHOLE_FIRST
        limit = budget_tokens * (0.25 if first else OUTLINE_SHARE)
        large = pick.tokens > limit and tier != "constitution"
        ranked += tier == "ranked"
        entries = index.outlines.get(path)
        if OUTLINES and entries and (large or used + pick.tokens > budget_tokens):
            text, bodies = outline(repo.text(path), entries, goal_words,
                                   int(repo.sizes[path] * BODIES_SHARE))  # fmt: skip
            shown = "its outline" + (f" with {bodies} matching bodies" if bodies else "")
            pick = Pick(path, f"{reason}; {shown}", tier, estimate_tokens(len(text.encode())),
                        pick.score, "outline", parts, text)  # fmt: skip
        if used + pick.tokens <= budget_tokens:
            selection.picked.append(pick)
            used += pick.tokens
        else:
            selection.skipped.append(pick)
    return selection


@dataclass
class _Ranking:
    index: Index
    words: dict[str, np.ndarray]
    lexical: np.ndarray
    graph: np.ndarray
    total: np.ndarray
    #: The files the graph walk starts from: those the task names, then the lexical best.
    named: set[int]
    seeds: set[int]

    def reason(self, i: int) -> str:
        said = []
        if self.lexical[i] > 0:
            # The five words that weigh most in this file, heaviest first.
            weighed = sorted(self.words.items(), key=lambda item: -item[1][i])
            words = [w for w, scores in weighed[:5] if scores[i] > 0]
            said.append(f"shares the goal's words ({', '.join(words)})")
        link = self.index.graph.strongest_link(i, self.named - {i})
        link = link or self.index.graph.strongest_link(i, self.seeds - {i})
        if link is not None:
            other, kind, user = link
            seed = self.index.files[other]
            if user and is_test(self.index.files[i]):
                said.append(f"tests {seed}")
            elif kind & IMPORTS:
                said.append(f"imports {seed}" if user else f"imported by {seed}")
            else:
                said.append(f"uses names {seed} defines" if user else f"defines names {seed} uses")
        return "; ".join(said) or "near the goal's files in the code graph"


def _prior(path: str) -> float:
    if PurePosixPath(path).suffix in PROSE_SUFFIXES:
        return PROSE
    return TESTS if is_test(path) else 1.0


def _rank(index: Index, goal: str, named: dict[str, tuple[str, str]], scope: list[str]) -> _Ranking:
    n = len(index.files)
    words = {w: index.scores([w]) for w in query_tokens(goal)}
    lexical = sum(words.values(), np.zeros(n))
    prior = np.array([_prior(p) for p in index.files])
    if scope:
        prior += np.array([0.5 if first_match(scope, p) else 0.0 for p in index.files])
    lexical = lexical * prior
    if lexical.max(initial=0) > 0:
        lexical = lexical / lexical.max()
    seeds = np.zeros(n)
    number = {p: i for i, p in enumerate(index.files)}
    chosen = {number[p] for p, (tier, _) in named.items() if tier != "constitution"}
    seeds[list(chosen)] = 1.0
    top = np.argsort(-lexical)[:LEXICAL_SEEDS]
    seeds[top] += lexical[top]
    graph = index.graph.rank(seeds) * prior if n else np.zeros(0)
    if graph.max(initial=0) > 0:
        graph = graph / graph.max()
    return _Ranking(index, words, lexical, graph, LEXICAL * lexical + GRAPH * graph, chosen,
                    {int(i) for i in np.nonzero(seeds)[0]})  # fmt: skip
