"""List prices of Anthropic models, for the cost in every result and the dollar budget.

Dollars per million tokens; cache writes cost 1.25x and cache reads 0.1x the input price.
Unknown models cost 0 and say so (`price_of` returns None): the token budget still holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentfactory.core.task import Usage

#: (model name prefix, input $/MTok, output $/MTok); the longest matching prefix wins.
PRICES: list[tuple[str, float, float]] = [
    ("claude-opus-4-5", 5.0, 25.0),
    ("claude-opus-4-6", 5.0, 25.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-5-haiku", 0.8, 4.0),
]


def price_of(model: str) -> tuple[float, float] | None:
    """(input, output) dollars per million tokens of *model*, or None if unknown."""
    matches = [(len(p), i, o) for p, i, o in PRICES if model.startswith(p)]
    if not matches:
        return None
    _, price_in, price_out = max(matches)
    return price_in, price_out


def cost_usd(model: str, usage: Usage) -> float:
    """Dollars *usage* costs on *model* (0 for an unknown model)."""
    price = price_of(model)
    if price is None:
        return 0.0
    price_in, price_out = price
    dollars = (
        usage.input_tokens * price_in
        + usage.cache_creation_tokens * price_in * 1.25
        + usage.cache_read_tokens * price_in * 0.1
        + usage.output_tokens * price_out
    ) / 1_000_000
    return round(dollars, 6)
