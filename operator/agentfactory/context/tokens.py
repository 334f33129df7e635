"""Code-aware words: what both the files and the goal are split into before they are matched."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: English words that say nothing about where a change goes. The rest is left to BM25's
#: inverse document frequency: a word in every file weighs nothing (`version` and `update`
#: stay words, because `__version__` and `update()` are where such changes go).
STOP = {
    "the", "and", "for", "with", "that", "this", "from", "into", "when", "are", "not", "a",
    "an", "to", "of", "in", "on", "is", "be", "by", "it", "as", "or", "at", "if", "no", "do",
    "so", "we", "you", "its", "was", "were", "but", "also", "than", "then", "should", "must",
    "can", "don", "doesn", "isn", "via",
}  # fmt: skip


def _fold(word: str) -> str:
    # One plural and one spelling of both sides: "rounds" finds "round".
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def code_tokens(text: str) -> list[str]:
    """Each identifier, lowercased, then its parts split on underscores and case:
    `shippingCost` gives `shippingcost`, `shipping`, `cost`."""
    out: list[str] = []
    for word in _IDENTIFIER.findall(text):
        lower = word.lower().strip("_")
        if not lower:
            continue
        out.append(_fold(lower))
        parts = [p.lower() for chunk in word.split("_") for p in _PART.findall(chunk)]
        if len(parts) > 1:
            out += [_fold(p) for p in parts if len(p) > 1]
    return out


def query_tokens(goal: str) -> list[str]:
    """The goal's words to rank by: code tokens without the stopwords, each once."""
    return list(dict.fromkeys(t for t in code_tokens(goal) if t not in STOP and len(t) > 1))


def identifiers(text: str) -> list[str]:
    """The identifiers of *text* as written (for the code graph's references)."""
    return _IDENTIFIER.findall(text)
