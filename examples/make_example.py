"""Builds the local example: `webshop.bundle` (a small repository with a failing test) and
`replays/` (recorded agent answers for every attempt of the example's tasks).

Run from the repository root: `python examples/make_example.py`. The outputs are committed;
tests/test_example.py checks they are what this script makes.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = "python3 -m unittest discover -q"
MODEL = "claude-sonnet-4-6"

FILES = {
    "AGENTS.md": """# webshop principles

- Standard library only; tests use unittest.
- Money is integer cents, never floats.
- Every behaviour change comes with a test that failed before it.
""",
    "README.md": "# webshop\n\nCart and pricing arithmetic for a small shop.\n",
    "shop/__init__.py": "",
    "shop/cart.py": '''"""Shopping cart arithmetic. Money is integer cents."""


def cart_total(items):
    """Total of (price_cents, quantity) pairs."""
    return sum(price for price, quantity in items)
''',
    "shop/pricing.py": '''"""Prices and discounts. Money is integer cents."""

DISCOUNTS = {}


def apply_discount(total_cents, code):
    """The total after discount *code*; unknown codes change nothing."""
    percent = DISCOUNTS.get(code, 0)
    return total_cents - total_cents * percent // 100
''',
    "tests/__init__.py": "",
    "tests/test_cart.py": """import unittest

from shop.cart import cart_total


class CartTotal(unittest.TestCase):
    def test_empty_cart_is_free(self):
        self.assertEqual(cart_total([]), 0)

    def test_total_counts_quantity(self):
        self.assertEqual(cart_total([(250, 2), (100, 1)]), 600)
""",
    "tests/test_pricing.py": """import unittest

from shop.pricing import apply_discount


class Discounts(unittest.TestCase):
    def test_unknown_code_changes_nothing(self):
        self.assertEqual(apply_discount(1000, "NOPE"), 1000)
""",
    "migrations/0001_init.sql": "CREATE TABLE carts (id INTEGER PRIMARY KEY);\n",
}


def message(n: int, *blocks: dict[str, object]) -> dict[str, object]:
    content = []
    for index, block in enumerate(blocks):
        content.append({"type": "tool_use", "id": f"toolu_{n:02d}{index}", **block})
    return {
        "id": f"msg_replay{n:04d}", "type": "message", "role": "assistant", "model": MODEL,
        "content": content, "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 1800 + 400 * n, "output_tokens": 180,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }  # fmt: skip


def tool(name: str, **args: object) -> dict[str, object]:
    return {"name": name, "input": args}


def plan(summary: str, steps: list[str], files: list[str]) -> list[dict[str, object]]:
    return [message(1, tool("submit_plan", summary=summary, steps=steps, filesInScope=files,
                            testsToAddFirst=[f for f in files if "test" in f]))]  # fmt: skip


APPROVE = [message(1, tool("submit_verdict", verdict="APPROVE", summary="Meets every criterion."))]
REVIEW = [
    message(1, tool("git_diff")),
    message(2, tool("submit_verdict", verdict="APPROVE",
                    summary="The diff does what the contract asks and is tested.")),
]  # fmt: skip


def implement(edits: list[dict[str, object]], summary: str) -> list[dict[str, object]]:
    return [
        *[message(i + 1, edit) for i, edit in enumerate(edits)],
        message(len(edits) + 1, tool("run_command", command=CHECK)),
        message(len(edits) + 2, tool("submit_implementation", summary=summary,
                                     rollback="Revert the merge commit.")),
    ]  # fmt: skip


REPLAYS = {
    "fix-cart-total": {
        "plan": plan("Multiply each price by its quantity in cart_total.",
                     ["Run tests/test_cart.py and see test_total_counts_quantity fail",
                      "Sum price * quantity in shop/cart.py", "Run the tests"],
                     ["shop/cart.py", "tests/test_cart.py"]),
        "implement": implement([
            tool("replace_in_file", path="shop/cart.py",
                 old="sum(price for price, quantity in items)",
                 new="sum(price * quantity for price, quantity in items)")],
            "cart_total multiplies each price by its quantity."),
    },
    "discount-codes": {
        "plan": plan("Add the SAVE10 code: 10% off, rounded down to whole cents.",
                     ["Add a failing test for SAVE10", "Register SAVE10 in DISCOUNTS"],
                     ["shop/pricing.py", "tests/test_pricing.py"]),
        "implement": implement([
            tool("replace_in_file", path="shop/pricing.py", old="DISCOUNTS = {}",
                 new='DISCOUNTS = {"SAVE10": 10}'),
            tool("replace_in_file", path="tests/test_pricing.py",
                 old='        self.assertEqual(apply_discount(1000, "NOPE"), 1000)\n',
                 new='        self.assertEqual(apply_discount(1000, "NOPE"), 1000)\n\n'
                     '    def test_save10_takes_ten_percent(self):\n'
                     '        self.assertEqual(apply_discount(1999, "SAVE10"), 1800)\n'),
        ], "SAVE10 takes 10% off, rounded down to whole cents."),
    },
    "order-history": {
        "plan": plan("Add an orders table and record_order() that stores a cart's total.",
                     ["Add migrations/0002_orders.sql", "Add shop/orders.py with record_order",
                      "Test record_order against sqlite in memory"],
                     ["migrations/0002_orders.sql", "shop/orders.py", "tests/test_orders.py"]),
        "implement": implement([
            tool("write_file", path="migrations/0002_orders.sql", content=(
                "CREATE TABLE orders (\n    id INTEGER PRIMARY KEY,\n"
                "    total_cents INTEGER NOT NULL\n);\n")),
            tool("write_file", path="shop/orders.py", content=(
                '"""Order history. Money is integer cents."""\n\nfrom shop.cart import cart_total\n'
                "\n\ndef record_order(db, items):\n"
                '    """Store the order and return its id."""\n'
                '    cursor = db.execute("INSERT INTO orders (total_cents) VALUES (?)",'
                " (cart_total(items),))\n    return cursor.lastrowid\n")),
            tool("write_file", path="tests/test_orders.py", content=(
                "import sqlite3\nimport unittest\nfrom pathlib import Path\n\n"
                "from shop.orders import record_order\n\n\nclass Orders(unittest.TestCase):\n"
                "    def test_record_order_stores_the_total(self):\n"
                "        db = sqlite3.connect(':memory:')\n"
                "        db.executescript(Path('migrations/0002_orders.sql').read_text())\n"
                "        order = record_order(db, [(250, 2)])\n"
                "        row = db.execute(\n"
                "            'SELECT total_cents FROM orders WHERE id = ?', (order,)\n        )\n"
                "        self.assertEqual(row.fetchone(), (500,))\n")),
        ], "An orders table and record_order() that stores each order's total."),
    },
}  # fmt: skip


def build_bundle(path: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-11-01T09:00:00Z",
           "GIT_COMMITTER_DATE": "2026-11-01T09:00:00Z", "GIT_AUTHOR_NAME": "webshop",
           "GIT_AUTHOR_EMAIL": "dev@webshop.example", "GIT_COMMITTER_NAME": "webshop",
           "GIT_COMMITTER_EMAIL": "dev@webshop.example"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        for name, text in FILES.items():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "webshop"]):
            subprocess.run(["git", *args], cwd=repo, env=env, check=True)
        bundle = ["git", "bundle", "create", "-q", str(path), "HEAD", "main"]
        subprocess.run(bundle, cwd=repo, env=env, check=True)


def write_replays(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    for task, stages in REPLAYS.items():
        files = {
            f"{task}-plan-1.json": stages["plan"],
            f"{task}-plan-review-1.json": APPROVE,
            f"{task}-implement-1.json": stages["implement"],
            f"{task}-code-review-1.json": REVIEW,
        }
        for name, script in files.items():
            (directory / name).write_text(json.dumps(script, indent=1) + "\n")


if __name__ == "__main__":
    build_bundle(HERE / "webshop.bundle")
    write_replays(HERE / "replays")
    print("wrote examples/webshop.bundle and examples/replays/")  # noqa: T201
