"""The code graph: files linked by the names one uses and another defines, and by imports;
ranked from a set of seed files by personalised PageRank (as aider's repository map does).

Written here rather than taken from networkx: the graph is three numpy arrays, and power
iteration over them is a dozen lines (networkx would add a dependency and, for its own
pagerank, scipy).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from agentfactory.context.facts import Facts

#: Edge kinds, as bits.
IMPORTS, USES = 1, 2
#: A name defined in more files than this says nothing about which one a file means.
MAX_DEFINERS = 4
#: How much of an edge runs backwards (from the definition to its users).
BACKWARDS = 0.5
#: The chance that the walk goes on rather than restarts at a seed: low, to stay near them.
DAMPING = 0.5


class Graph:
    """Directed weighted edges between file numbers, kept as parallel arrays."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, kind: np.ndarray):
        self.src, self.dst, self.weight, self.kind = src, dst, weight, kind

    @classmethod
    def of(cls, facts: dict[int, Facts], files: list[str], definers: dict[str, list[int]]) -> Graph:
        number = {path: i for i, path in enumerate(files)}
        weights: dict[tuple[int, int], float] = defaultdict(float)
        kinds: dict[tuple[int, int], int] = defaultdict(int)
        for i, fact in facts.items():
            for target in fact.imports:
                j = number.get(target)
                if j is not None and j != i:
                    weights[i, j] += 1.0
                    kinds[i, j] |= IMPORTS
            for name, count in fact.references.items():
                found = definers.get(name)
                if not found or len(found) > MAX_DEFINERS or len(name) < 3:
                    continue
                for j in found:
                    if j != i:
                        weights[i, j] += math.sqrt(count) / len(found)
                        kinds[i, j] |= USES
        pairs = [pair for pair, w in weights.items() if w > 0]
        src = np.array([a for a, _ in pairs] + [b for _, b in pairs], dtype=np.int32)
        dst = np.array([b for _, b in pairs] + [a for a, _ in pairs], dtype=np.int32)
        forward = np.array([weights[p] for p in pairs], dtype=np.float64)
        kind = np.array([kinds[p] for p in pairs] * 2, dtype=np.int8)
        return cls(src, dst, np.concatenate([forward, forward * BACKWARDS]), kind)

    def rank(self, seeds: np.ndarray, *, rounds: int = 30) -> np.ndarray:
        """Personalised PageRank: where a walk that restarts at *seeds* spends its time."""
        total = seeds.sum()
        if total <= 0 or not len(self.src):
            return np.zeros_like(seeds)
        restart = seeds / total
        out = np.bincount(self.src, weights=self.weight, minlength=len(seeds))
        share = self.weight / out[self.src]
        stuck = out == 0
        rank: np.ndarray = restart.copy()
        for _ in range(rounds):
            spread = np.bincount(self.dst, weights=rank[self.src] * share, minlength=len(seeds))
            rank = (1 - DAMPING) * restart + DAMPING * (spread + rank[stuck].sum() * restart)
        return rank

    def strongest_link(self, i: int, among: set[int]) -> tuple[int, int, bool] | None:
        """The file in *among* with the heaviest link to file *i*: (that file, the link's
        kind, whether *i* is the one that imports or uses)."""
        forward = len(self.src) // 2  # the second half holds the same edges backwards
        src, dst, weight = self.src[:forward], self.dst[:forward], self.weight[:forward]
        best: tuple[float, int, int, bool] | None = None
        for mask, user in ((src == i, True), (dst == i, False)):
            for e in np.nonzero(mask)[0]:
                other = int(dst[e] if user else src[e])
                if other in among and (best is None or weight[e] > best[0]):
                    best = (float(weight[e]), other, int(self.kind[e]), user)
        return None if best is None else best[1:]
