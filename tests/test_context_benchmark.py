"""The context benchmark's harness on a history made here: which commits become cases, what
their truth is, and that each method's recall is counted over the parent's checkout."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from benchmarks.context import ABLATIONS, Case, bm25, cases, fill, run_selection, word_count, words

from agentfactory.context import Repository, select

if TYPE_CHECKING:
    from pathlib import Path


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
                    "-qm", message], check=True)  # fmt: skip
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip


def test_cases_are_commits_changing_one_to_five_existing_source_files(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    many = {f"pkg/m{i}.py": f"x = {i}\n" for i in range(6)}
    commit(tmp_path, "start", {"pkg/billing.py": "def charge():\n    pass\n",
                               "README.md": "shop\n", **many})  # fmt: skip
    fixed = commit(tmp_path, "Charge the card once", {"pkg/billing.py": "def charge():\n    1\n",
                                                      "README.md": "shop!\n"})  # fmt: skip
    commit(tmp_path, "Add refunds", {"pkg/refunds.py": "def refund():\n    pass\n"})
    commit(tmp_path, "Touch six", {name: text + "y = 1\n" for name, text in many.items()})
    found = cases(tmp_path, limit=10)
    assert found == [Case(fixed, "Charge the card once", frozenset({"pkg/billing.py"}))], (
        "a new file is no case, six files are too many, the README is not source"
    )


def test_the_baselines_rank_by_the_goals_words_and_fill_the_budget_in_order(
    tmp_path: Path,
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    commit(tmp_path, "start", {"billing.py": "def charge_card(card):\n    return card.charge()\n",
                               "refunds.py": "def refund(order):\n    return order\n" * 40,
                               "notes.md": "unrelated\n"})  # fmt: skip
    repo = Repository(tmp_path)
    assert words("chargeCard parse_HTTPResponse __init__") == [
        "chargecard", "charge", "card", "parse_httpresponse", "parse", "http", "response",
        "__init__", "init"]  # fmt: skip
    for rank in (word_count, bm25):
        ranked = rank(tmp_path, repo, "Charge the card once")
        assert ranked[0] == "billing.py", rank.__name__
        assert "notes.md" not in ranked, "no shared word: not ranked at all"
    budget = repo.tokens("billing.py")
    assert fill(["refunds.py", "billing.py"], repo, budget) == {"billing.py"}, (
        "skips what won't fit"
    )


def test_each_part_is_left_out_for_its_run_only(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    body = "".join(f"def step_{n}(order):\n" + "    order += 1\n" * 10 + "\n\n" for n in range(60))
    commit(tmp_path, "start", {"billing.py": body + "def charge_card(card):\n    return 1\n"})
    before = {name: getattr(select, name) for name in ("GRAPH", "OUTLINES")}
    cache = tmp_path / ".cache"
    whole = run_selection(tmp_path, "charge the card", 1_000, cache, {})
    without = run_selection(tmp_path, "charge the card", 1_000, cache,
                            ABLATIONS["- without outlines"])  # fmt: skip
    assert whole == {"billing.py"} and without == set(), "only its outline fits"
    assert {name: getattr(select, name) for name in before} == before
