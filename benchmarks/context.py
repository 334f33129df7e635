"""Context selection against this repository's own history.

For each commit that touches 1 to 5 Python files: the goal is the commit's subject, the truth
is the Python files it changed that existed before it, and the selection runs on a checkout of
the parent commit. Prints recall at the budget (the share of truth files selected) and the
selected tokens as a share of the whole repository, next to a baseline measured in the same
run: random files filling the same budget (seeded, averaged over 20 draws).

Run: `.venv/bin/python benchmarks/context.py [BUDGET_TOKENS ...]`.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentfactory.context import Repository, select_context

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    ).stdout


def commits() -> list[tuple[str, str, list[str]]]:
    """(sha, subject, truth) for each eligible commit, oldest first."""
    out = []
    for line in git("log", "--no-merges", "--reverse", "--format=%H%x00%s").splitlines():
        sha, subject = line.split("\0", 1)
        parents = git("rev-list", "--parents", "-n", "1", sha).split()[1:]
        if not parents:
            continue
        status = git("diff", "--name-status", "--no-renames", parents[0], sha).splitlines()
        python = [row.split("\t") for row in status if row.endswith(".py")]
        if not 1 <= len(python) <= 5:
            continue
        truth = [path for kind, path in python if kind in ("M", "D")]
        if truth:
            out.append((sha, subject, truth))
    return out


def random_recall(repo: Repository, truth: set[str], budget: int, draws: int = 20) -> float:
    rng = random.Random(1)
    total = 0.0
    for _ in range(draws):
        files = repo.files[:]
        rng.shuffle(files)
        used, picked = 0, set()
        for path in files:
            if used + repo.tokens(path) <= budget:
                picked.add(path)
                used += repo.tokens(path)
        total += len(truth & picked) / len(truth)
    return total / draws


def main() -> None:
    budgets = [int(b) for b in sys.argv[1:]] or [10_000, 30_000]
    eligible = commits()
    print(f"{len(eligible)} commits touch 1-5 Python files that existed before them")
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            found = wanted = 0
            random_found = 0.0
            shares = []
            for sha, subject, truth in eligible:
                tree = Path(tmp) / sha[:12]
                if not tree.exists():
                    git("worktree", "add", "--detach", "-q", str(tree), f"{sha}^")
                selection = select_context(tree, goal=subject, budget_tokens=budget)
                picked = {pick.path for pick in selection.picked}
                hits = len(picked & set(truth))
                found += hits
                wanted += len(truth)
                random_found += random_recall(Repository(tree), set(truth), budget) * len(truth)
                shares.append(selection.tokens / selection.repo_tokens)
                print(
                    f"  {budget:>6} {sha[:8]} {hits}/{len(truth)}"
                    f" {selection.tokens:>6}/{selection.repo_tokens} tokens  {subject[:60]}"
                )
            recall, baseline = found / wanted, random_found / wanted
            ratio = recall / baseline if baseline else float("inf")
            print(
                f"budget {budget}: recall {recall:.2f} ({found}/{wanted}); random files in the"
                f" same budget {baseline:.2f}; ratio {ratio:.1f}x; selected tokens are"
                f" {sum(shares) / len(shares):.1%} of the repository on average"
            )
        for path in Path(tmp).iterdir():
            git("worktree", "remove", "--force", str(path))


if __name__ == "__main__":
    main()
