"""Context selection on a small real git repository: named files, goal paths and symbols,
imports followed both ways (Python and JS), tests of the seeds, the budget, what is missing,
and the `agentfactory context` command."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

from agentfactory.cli import main
from agentfactory.context import select_context
from agentfactory.context.tokens import code_tokens, query_tokens

if TYPE_CHECKING:
    from pathlib import Path

import pytest

FILES = {
    "AGENTS.md": "Write tests first.\n",
    "src/shop/__init__.py": "",
    "src/shop/cart.py": "from shop.pricing import price_of\n\n\ndef cart_total(items):\n"
                        "    return sum(price_of(i) for i in items)\n",
    "src/shop/pricing.py": "from .currency import to_cents\n\n\ndef price_of(item):\n"
                           "    return to_cents(item.price)\n",
    "src/shop/currency.py": "def to_cents(value):\n    return round(value * 100)\n",
    "src/shop/shipping.py": "def shipping_cost(weight):\n    return 5 * weight\n",
    "tests/test_cart.py": "from shop.cart import cart_total\n\n\ndef test_total():\n"
                          "    assert cart_total([]) == 0\n",
    "tests/test_shipping.py": "from shop.shipping import shipping_cost\n",
    "web/src/basket.ts": "import { format } from './money';\nexport const basket = 1;\n",
    "web/src/money.ts": "export function format(n: number) { return `${n}`; }\n",
    "web/src/basket.test.ts": "import { basket } from './basket';\n",
    "docs/big.md": "discount " * 40_000,
}  # fmt: skip


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    return tmp_path


def picks(repo: Path, **kwargs: object) -> dict[str, str]:
    selection = select_context(repo, **kwargs)  # type: ignore[arg-type]
    return {pick.path: pick.reason for pick in selection.picked}


def test_a_goal_naming_a_file_follows_its_imports_and_tests(shop: Path) -> None:
    chosen = picks(shop, goal="Cart totals in src/shop/cart.py ignore discounts")
    assert chosen["AGENTS.md"] == "project principles every agent reads first"
    assert chosen["src/shop/cart.py"] == "named in the goal"
    assert chosen["src/shop/pricing.py"] == "imported by src/shop/cart.py"
    assert chosen["tests/test_cart.py"].endswith("tests src/shop/cart.py")


def test_relative_python_imports_and_symbols_named_in_the_goal(shop: Path) -> None:
    chosen = picks(shop, goal="price_of rounds half cents wrongly")
    assert chosen["src/shop/pricing.py"] == "defines price_of, named in the goal"
    assert chosen["src/shop/currency.py"] == (
        "shares the goal's words (round, cent); imported by src/shop/pricing.py"
    )


def test_js_relative_imports_are_followed(shop: Path) -> None:
    chosen = picks(shop, goal="Fix rounding", files=["web/src/basket.ts"])
    assert chosen["web/src/money.ts"] == "imported by web/src/basket.ts"
    assert chosen["web/src/basket.test.ts"] == "tests web/src/basket.ts"


def test_the_budget_is_respected_and_what_did_not_fit_is_reported(shop: Path) -> None:
    selection = select_context(shop, goal="discount rules", budget_tokens=2_000)
    assert selection.tokens <= 2_000
    assert "docs/big.md" in [pick.path for pick in selection.skipped]
    assert selection.repo_tokens > 10_000


def test_missing_named_files_and_new_scope_files_are_reported(shop: Path) -> None:
    selection = select_context(
        shop, goal="g", files=["src/shop/gone.py"], scope=["src/shop/new_module.py"]
    )
    assert selection.missing == [
        "src/shop/gone.py",
        "src/shop/new_module.py (in scope; a new file?)",
    ]


def test_unrelated_files_are_left_out_even_with_budget_to_spare(shop: Path) -> None:
    chosen = picks(shop, goal="cart total", budget_tokens=100_000)
    assert "src/shop/cart.py" in chosen
    assert "src/shop/shipping.py" not in chosen and "tests/test_shipping.py" not in chosen


def test_code_tokens_keep_identifiers_and_split_them_and_the_goal_drops_stopwords() -> None:
    assert code_tokens("cartTotal shipping_cost") == [
        "carttotal",
        "cart",
        "total",
        "shipping_cost",
        "shipping",
        "cost",
    ]
    # Only English function words go: BM25 weighs the rest by how rare they are.
    wanted = ["bump", "version", "carttotal", "cart", "total", "shipping_cost", "shipping"]
    assert query_tokens("Bump the version of cartTotal in shipping_cost") == [*wanted, "cost"]


def test_binary_files_are_not_ranked_even_when_their_name_matches(shop: Path) -> None:
    (shop / "docs/cart_total.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 10)
    subprocess.run(["git", "-C", str(shop), "add", "-A"], check=True)
    chosen = picks(shop, goal="cart total", budget_tokens=100_000)
    assert "src/shop/cart.py" in chosen and "docs/cart_total.png" not in chosen


def test_the_context_command_prints_json(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["context", "--repo", str(shop), "--goal", "price_of is wrong", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    pricing = next(p for p in data["picked"] if p["path"] == "src/shop/pricing.py")
    assert pricing["reason"] == "defines price_of, named in the goal"
    assert pricing["tier"] == "goal" and pricing["tokens"] > 0
    assert data["selectedTokens"] <= data["budgetTokens"]


def test_the_context_command_prints_a_readable_list(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["context", "--repo", str(shop), "--goal", "g", "--file", "nope.py"])
    out = capsys.readouterr().out
    assert "of 30000 budget tokens" in out and "not found: nope.py" in out


def test_neighbours_of_a_keyword_match_never_outrank_it(shop: Path) -> None:
    # Found by the history benchmark: tests and imports of a file that merely shares the
    # goal's words used to rank above that file and crowd it out of the budget.
    selection = select_context(shop, goal="shipping cost doubles", budget_tokens=100_000)
    order = [pick.path for pick in selection.picked]
    assert order.index("src/shop/shipping.py") < order.index("tests/test_shipping.py")


def commit(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "base"], check=True)  # fmt: skip


def test_the_index_is_cached_per_commit_and_never_for_a_changed_tree(
    shop: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.mktemp("cache")
    assert select_context(shop, goal="cart total", cache=cache).index == "built"  # no commit yet
    commit(shop)
    first = select_context(shop, goal="cart total", cache=cache)
    again = select_context(shop, goal="cart total", cache=cache)
    assert (first.index, again.index) == ("cached", "cache")
    assert [p.path for p in again.picked] == [p.path for p in first.picked]
    # Arrays and JSON only: nothing in the cache is unpickled.
    stored = [p for p in cache.rglob("*") if p.is_file()]
    assert stored and {p.suffix for p in stored} <= {".json", ".npy", ".npz"}
    (shop / "src/shop/cart.py").write_text("def cart_total(items):\n    return 0\n")
    assert select_context(shop, goal="cart total", cache=cache).index == "built"
    assert len(list((cache / "context").iterdir())) == 1


def test_a_large_file_is_given_as_its_outline_with_the_bodies_that_match(shop: Path) -> None:
    functions = [f"def helper_{n}(value):\n    \"\"\"Helper {n}.\"\"\"\n" + "    value += 1\n" * 30
                 for n in range(40)]  # fmt: skip
    functions[17] = 'def refund_order(order):\n    """Refund it."""\n    return order.refund\n'
    (shop / "src/shop/orders.py").write_text("import os\n\n\n" + "\n\n".join(functions))
    subprocess.run(["git", "-C", str(shop), "add", "-A"], check=True)
    selection = select_context(shop, goal="refund an order", budget_tokens=4_000)
    orders = next(p for p in selection.picked if p.path == "src/shop/orders.py")
    assert orders.form == "outline" and orders.outline is not None
    assert orders.tokens < (shop / "src/shop/orders.py").stat().st_size // 4 // 4
    assert "    return order.refund" in orders.outline  # the matching body, in full
    assert "def helper_3(value):" in orders.outline and "value += 1" not in orders.outline
    assert "⋮" in orders.outline and orders.reason.endswith("its outline with 1 matching bodies")


def test_the_code_graph_brings_in_what_the_best_match_uses(shop: Path) -> None:
    chosen = picks(shop, goal="cart totals are wrong", budget_tokens=100_000)
    # pricing.py shares no word with the goal: the graph found it (cart.py uses price_of).
    assert chosen["src/shop/pricing.py"] == "imported by src/shop/cart.py"
    selection = select_context(shop, goal="cart totals are wrong", budget_tokens=100_000)
    pricing = next(p for p in selection.picked if p.path == "src/shop/pricing.py")
    assert pricing.parts["lexical"] == 0 and pricing.parts["graph"] > 0


def test_the_agent_reads_an_outline_where_the_selection_gave_one(shop: Path) -> None:
    from agentfactory.agent.runner import render_context
    from agentfactory.agent.workspace import Workspace
    from agentfactory.context import Pick, Selection

    outlined = Pick("src/shop/cart.py", "why", "ranked", 3, form="outline", outline="OUTLINE")
    text = render_context(Workspace(shop), Selection(picked=[outlined]))
    assert "OUTLINE" in text and "cart_total" not in text


def test_where_the_cache_cannot_be_written_selection_indexes_every_time(shop: Path) -> None:
    commit(shop)
    blocked = shop.parent / "not-a-directory"
    blocked.write_text("a file where the cache directory would be\n")
    selection = select_context(shop, goal="cart total", cache=blocked)
    assert selection.index == "built" and "src/shop/cart.py" in [p.path for p in selection.picked]


def test_a_dotted_name_in_the_goal_names_its_module_and_its_words_still_rank(shop: Path) -> None:
    # Found on ansible's history: "Fix error message given by ...facts.timeout.timeout".
    chosen = picks(shop, goal="Wrong rounding in shop.currency.to_cents", budget_tokens=100_000)
    assert chosen["src/shop/currency.py"] == "named in the goal"


def test_a_symbolic_link_is_not_shown_beside_the_file_it_points_to(shop: Path) -> None:
    (shop / "bin").mkdir()
    (shop / "bin/cart").symlink_to("../src/shop/cart.py")
    subprocess.run(["git", "-C", str(shop), "add", "-A"], check=True)
    chosen = picks(shop, goal="cart total", budget_tokens=100_000)
    assert "src/shop/cart.py" in chosen and "bin/cart" not in chosen
