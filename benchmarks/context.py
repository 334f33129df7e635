"""Context selection against a repository's real history.

Cases come from the history of any git repository: each commit (no merges) that changes 1 to
5 source files that existed before it. The goal is the commit's subject, the truth is those
files, and every method selects on a checkout of the parent commit, within a budget that is a
share of that checkout's tokens (5%, 10% and 20% by default). Recall is the share of truth
files selected, over all cases. Three methods run on the same cases in the same run:

- `agentfactory`: `select_context`, as an agent's contract gets it (a file given as its outline
  counts as selected: the agent is shown it; `- without outlines` says what that is worth);
- `word count`: files ranked by how often the goal's words occur in their path and text;
- `BM25`: files ranked by BM25 (`bm25s`) over code-aware tokens of their path and text
  (identifiers split on case and underscores).

Both baselines fill the budget in rank order, skipping a file that does not fit, as the
selection does. With `--parts`, the selection also runs without each of its parts (the graph;
outlines), to say what each buys. With `--timing`, it times selection on the checkout as it
is instead: the index built cold, then selections with the cached index, beside word-count
ranking on the same goals.

Run: `.venv/bin/python -m benchmarks.context [--repo PATH] [--cases 60] [--shares 5,10,20]
[--parts | --timing]` (default: this repository). Prints figures only (no assertions).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bm25s

from agentfactory.context import Repository, select, select_context
from agentfactory.context.index import index_of

ROOT = Path(__file__).resolve().parent.parent
#: What counts as a source file for the cases' truth.
SOURCE = {".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".rb", ".c",
          ".h", ".cc", ".cpp", ".hpp"}  # fmt: skip
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: Words too common in goals to rank by.
_STOP = {"the", "and", "for", "with", "that", "this", "from", "into", "when", "are", "not",
         "use", "add", "fix", "a", "an", "to", "of", "in", "on", "is", "be", "by", "it", "as",
         "or", "at", "if", "no"}  # fmt: skip


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


@dataclass(frozen=True)
class Case:
    sha: str
    goal: str
    truth: frozenset[str]


def cases(repo: Path, limit: int) -> list[Case]:
    """The newest *limit* commits that change 1-5 source files that existed before them."""
    found: list[Case] = []
    log = git("log", "--no-merges", "--first-parent", "--format=%H%x00%P%x00%s", cwd=repo)
    for line in log.splitlines():
        sha, parents, subject = line.split("\0", 2)
        if len(parents.split()) != 1 or not subject.strip():
            continue
        status = git("diff", "--name-status", "--no-renames", f"{sha}^", sha, cwd=repo)
        rows = [row.split("\t") for row in status.splitlines()]
        source = [(kind, path) for kind, path in rows if PurePosixPath(path).suffix in SOURCE]
        if not 1 <= len(source) <= 5 or any(kind == "A" for kind, _ in source):
            continue
        found.append(Case(sha, subject, frozenset(path for _, path in source)))
        if len(found) == limit:
            break
    return found


def words(text: str) -> list[str]:
    """Code-aware tokens: each identifier and its parts (case and underscores), lowercased."""
    out = []
    for word in _WORD.findall(text):
        lower = word.lower()
        out.append(lower)
        parts = [p.lower() for chunk in word.split("_") for p in _PART.findall(chunk)]
        if parts != [lower]:
            out += parts
    return out


def fill(ranked: list[str], repo: Repository, budget: int) -> set[str]:
    """The files of *ranked* that fit *budget*, in rank order."""
    used, picked = 0, set()
    for path in ranked:
        cost = repo.tokens(path)
        if used + cost <= budget:
            picked.add(path)
            used += cost
    return picked


def read(tree: Path, path: str) -> str:
    try:
        return (tree / path).read_text(errors="replace")
    except OSError:
        return ""


def word_count(tree: Path, repo: Repository, goal: str) -> list[str]:
    wanted = {w for w in words(goal) if w not in _STOP and len(w) > 2}
    scores = {}
    for path in repo.files:
        counts = Counter(words(f"{path} {read(tree, path)}"))
        scores[path] = sum(counts[w] for w in wanted)
    return sorted((p for p in repo.files if scores[p] > 0), key=lambda p: -scores[p])


def bm25(tree: Path, repo: Repository, goal: str) -> list[str]:
    corpus = [words(f"{path} {read(tree, path)}") for path in repo.files]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    query = [w for w in words(goal) if w not in _STOP]
    if not query:
        return []
    scores = retriever.get_scores(query)
    order = sorted(range(len(repo.files)), key=lambda i: -scores[i])
    return [repo.files[i] for i in order if scores[i] > 0]


#: The engine's parts, each left out in turn (by zeroing its weight) to say what it buys.
ABLATIONS = {
    "agentfactory": {},
    "- without the graph": {"GRAPH": 0.0},
    "- without outlines": {"OUTLINES": False},
}


def run_selection(
    tree: Path, goal: str, budget: int, cache: Path, tuning: dict[str, object]
) -> set[str]:
    saved = {name: getattr(select, name) for name in tuning}
    for name, value in tuning.items():
        setattr(select, name, value)
    try:
        chosen = select_context(tree, goal=goal, budget_tokens=budget, cache=cache)
    finally:
        for name, value in saved.items():
            setattr(select, name, value)
    return {p.path for p in chosen.picked}


def timing(repo_path: Path, goals: int) -> None:
    """Selection on the checkout as it is: the index built cold, then selections reading the
    cached index, beside word-count ranking on the same goals (which reads every file)."""
    subjects = [c.goal for c in cases(repo_path, goals)]
    repo = Repository(repo_path)
    budget = sum(repo.tokens(p) for p in repo.files) // 10
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        index_of(Repository(repo_path), Path(tmp))
        cold = time.perf_counter() - start
        warm, baseline = [], []
        for goal in subjects:
            start = time.perf_counter()
            chosen = select_context(repo_path, goal=goal, budget_tokens=budget, cache=Path(tmp))
            warm.append(time.perf_counter() - start)
            assert chosen.index == "cache"
            start = time.perf_counter()
            word_count(repo_path, repo, goal)
            baseline.append(time.perf_counter() - start)
    warm.sort()
    baseline.sort()
    print(f"{repo_path.name}: {len(repo.files)} files, {len(subjects)} goals, budget 10%")
    print(f"index built cold: {cold:.2f} s")
    print(f"selection with the cached index: p50 {warm[len(warm) // 2]:.2f} s,"
          f" max {warm[-1]:.2f} s")  # fmt: skip
    print(
        f"word-count ranking (reads every file): p50 {baseline[len(baseline) // 2]:.2f} s;"
        f" selection / word count: {warm[len(warm) // 2] / baseline[len(baseline) // 2]:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--shares", default="5,10,20", help="budgets, in % of the tokens")
    parser.add_argument("--parts", action="store_true", help="also run without each part")
    parser.add_argument("--timing", action="store_true", help="time selection on the checkout")
    args = parser.parse_args()
    if args.timing:
        timing(args.repo.resolve(), args.cases)
        return
    shares = [int(s) / 100 for s in args.shares.split(",")]
    repo_path = args.repo.resolve()
    chosen = cases(repo_path, args.cases)
    variants = list(ABLATIONS) if args.parts else ["agentfactory"]
    methods = (*variants, "word count", "BM25")
    found = dict.fromkeys(((m, s) for m in methods for s in shares), 0)
    wanted, seconds = 0, dict.fromkeys((*methods, "index"), 0.0)
    print(f"{repo_path.name}: {len(chosen)} commits changing 1-5 existing source files")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for case in chosen:
            tree = Path(tmp) / case.sha[:12]
            git("worktree", "add", "--detach", "-q", str(tree), f"{case.sha}^", cwd=repo_path)
            try:
                repo = Repository(tree)
                truth = {p for p in case.truth if (tree / p).exists()}
                wanted += len(truth)
                total = sum(repo.tokens(p) for p in repo.files)
                start = time.perf_counter()
                index_of(repo, cache)  # built and cached: the selections below read it
                seconds["index"] += time.perf_counter() - start
                for variant in variants:
                    for share in shares:
                        start = time.perf_counter()
                        picked = run_selection(tree, case.goal, int(total * share), cache,
                                               ABLATIONS[variant])  # fmt: skip
                        seconds[variant] += time.perf_counter() - start
                        found[variant, share] += len(truth & picked)
                for name, rank in (("word count", word_count), ("BM25", bm25)):
                    start = time.perf_counter()
                    ranked = rank(tree, repo, case.goal)
                    seconds[name] += time.perf_counter() - start
                    for share in shares:
                        found[name, share] += len(truth & fill(ranked, repo, int(total * share)))
            finally:
                git("worktree", "remove", "--force", str(tree), cwd=repo_path)
    print(f"truth files: {wanted}\n")
    columns = " | ".join(f"recall at {s:.0%}" for s in shares)
    print(f"| method | {columns} | seconds per selection |")
    print("| --- |" + " --- |" * (len(shares) + 1))
    runs = dict.fromkeys(variants, len(shares)) | {"word count": 1, "BM25": 1}
    for m in methods:
        recalls = " | ".join(f"{found[m, s] / max(1, wanted):.2f}" for s in shares)
        per_case = seconds[m] / max(1, len(chosen)) / runs[m]
        print(f"| {m} | {recalls} | {per_case:.2f} |")
    print(f"\nindex build, per commit: {seconds['index'] / max(1, len(chosen)):.2f} s")
    base = {s: found["word count", s] / max(1, wanted) for s in shares}
    ratios = ", ".join(
        f"{s:.0%}: {found['agentfactory', s] / max(1, wanted) / base[s]:.2f}x"
        if base[s]
        else f"{s:.0%}: -"
        for s in shares
    )
    print(f"agentfactory / word count: {ratios}")


if __name__ == "__main__":
    main()
