"""Context selection: which files an agent should read first, within a token budget.

Start from what the task names (the constitution, `context.files`, paths and modules the goal
mentions, concrete files in the scope), then follow Python imports (and JS/TS relative
imports, best effort) both ways: what those files import, and the tests that import them.
Fill what budget is left with files whose paths and contents share the goal's words. Every
pick carries its reason; named files that do not exist are reported as missing, and files
that did not fit as skipped, so a person can see what an agent was and was not shown.

Tokens are estimated at four bytes a token (the same estimate everywhere in the project).
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agentfactory.core.globs import first_match, parse_glob

if TYPE_CHECKING:
    from collections.abc import Iterable

CONSTITUTION_FILES = ("AGENTS.md", "CLAUDE.md", "CONVENTIONS.md", "CONTRIBUTING.md")
_TEXT_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".rb", ".md", ".rst",
    ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".sql", ".sh", ".html", ".css",
}  # fmt: skip
_JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs")
_JS_IMPORT = re.compile(r"""(?:from\s+|import\s*\(?\s*|require\s*\(\s*)['"](\.{1,2}/[^'"]+)['"]""")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_STOP = {
    "the", "and", "for", "with", "that", "this", "from", "into", "when", "are", "not", "use",
    "add", "adds", "make", "makes", "new", "all", "any", "can", "each", "its", "per", "one",
    "should", "must", "returns", "return", "file", "files", "test", "tests", "code", "fix",
    "support", "change", "changes", "way", "now", "than", "then", "get", "set", "has", "have",
}  # fmt: skip

#: Order of the reasons, most important first.
TIERS = ("constitution", "named", "goal", "scope", "test", "import", "keyword")


def estimate_tokens(size_bytes: int) -> int:
    """The project's token estimate for a file of *size_bytes*."""
    return max(1, size_bytes // 4)


@dataclass(frozen=True)
class Pick:
    """A file considered for the context, and why."""

    path: str
    reason: str
    tier: str
    tokens: int
    score: float = 0.0


@dataclass
class Selection:
    """What context selection chose, skipped and could not find."""

    picked: list[Pick] = field(default_factory=list)
    skipped: list[Pick] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    budget_tokens: int = 0
    repo_tokens: int = 0

    @property
    def tokens(self) -> int:
        return sum(pick.tokens for pick in self.picked)

    def as_dict(self) -> dict[str, object]:
        return {
            "budgetTokens": self.budget_tokens,
            "selectedTokens": self.tokens,
            "repositoryTokens": self.repo_tokens,
            "picked": [vars(p) for p in self.picked],
            "skipped": [vars(p) for p in self.skipped],
            "missing": self.missing,
        }


def words(text: str) -> set[str]:
    """Lower-case identifier parts of *text* (snake_case and CamelCase split), minus stopwords."""
    parts: set[str] = set()
    for word in _WORD.findall(text):
        for piece in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", word):
            piece = piece.lower()
            if len(piece) >= 3 and piece not in _STOP:
                parts.add(piece.rstrip("s") if len(piece) > 4 else piece)
    return parts


class NotARepositoryError(Exception):
    """The directory is not a git working tree; the message says so and what to do."""


class Repository:
    """The files of a git working tree, read lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        found = subprocess.run(  # noqa: S603 - fixed argv
            ["git", "-C", str(self.root), "ls-files", "-z"],  # noqa: S607 - git from PATH
            capture_output=True, check=False,
        )  # fmt: skip
        if found.returncode != 0:
            said = found.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise NotARepositoryError(
                f"{root} is not a git working tree ({said[-1] if said else 'git failed'});"
                " run this inside one, or name it with --repo DIR"
            )
        listed = found.stdout.decode("utf-8", errors="replace")
        self.files = sorted(p for p in listed.split("\0") if p and (self.root / p).is_file())
        self.sizes = {p: (self.root / p).stat().st_size for p in self.files}
        self._text: dict[str, str] = {}
        self.modules = self._python_modules()

    def text(self, path: str) -> str:
        if path not in self._text:
            data = (self.root / path).read_bytes()[:400_000]
            self._text[path] = "" if b"\0" in data[:4096] else data.decode("utf-8", "replace")
        return self._text[path]

    def tokens(self, path: str) -> int:
        return estimate_tokens(self.sizes[path])

    def _python_modules(self) -> dict[str, str]:
        """Dotted module name to file, for every Python file under any source root."""
        modules: dict[str, str] = {}
        for path in self.files:
            if not path.endswith(".py"):
                continue
            parts = list(PurePosixPath(path).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            # A file is importable from every prefix directory (src/, operator/, the root).
            for start in range(len(parts)):
                modules.setdefault(".".join(parts[start:]), path)
        return modules

    def python_imports(self, path: str) -> list[str]:
        """Repository files *path* imports (absolute and relative imports)."""
        try:
            tree = ast.parse(self.text(path))
        except (SyntaxError, ValueError):
            return []
        package = list(PurePosixPath(path).parent.parts)
        found: list[str] = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package[: len(package) - node.level + 1] if node.level > 1 else package
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = self.modules.get(name)
                if target and target != path:
                    found.append(target)
        return list(dict.fromkeys(found))

    def js_imports(self, path: str) -> list[str]:
        """Repository files *path* imports with relative JS/TS imports (best effort)."""
        found: list[str] = []
        here = PurePosixPath(path).parent
        for spec in _JS_IMPORT.findall(self.text(path)):
            base = _normalise(here / spec)
            candidates = [base, *[base + s for s in _JS_SUFFIXES]]
            candidates += [f"{base}/index{s}" for s in _JS_SUFFIXES]
            found += [c for c in candidates if c in self.sizes][:1]
        return found

    def imports(self, path: str) -> list[str]:
        if path.endswith(".py"):
            return self.python_imports(path)
        if path.endswith(_JS_SUFFIXES):
            return self.js_imports(path)
        return []


def _normalise(path: PurePosixPath) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _is_test(path: str) -> bool:
    name = PurePosixPath(path).name
    return (
        name.startswith("test_")
        or name.endswith(("_test.py", "_test.go"))
        or ".test." in name
        or ".spec." in name
        or "/tests/" in f"/{path}"
        or "/__tests__/" in f"/{path}"
    )


def _is_concrete(pattern: str) -> bool:
    return all(seg is not None and all(c.kind == "lit" for c in seg) for seg in parse_glob(pattern))


_IDENTIFIER = re.compile(
    r"\b([A-Za-z_][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b"
)


def _goal_definitions(repo: Repository, goal: str) -> list[tuple[str, str]]:
    """(file, identifier) for identifiers in the goal (snake_case, camelCase, CamelCase)
    that a file defines as a function, class or assignment."""
    found: list[tuple[str, str]] = []
    for name in dict.fromkeys(_IDENTIFIER.findall(goal)):
        definition = re.compile(
            rf"^\s*(?:async\s+def|def|class|function|const|let|var|type|interface)\s+{re.escape(name)}\b"
            rf"|^{re.escape(name)}\s*[:=]",
            re.M,
        )
        for path in repo.files:
            if PurePosixPath(path).suffix in _TEXT_SUFFIXES and definition.search(repo.text(path)):
                found.append((path, name))
    return found


def _goal_paths(repo: Repository, goal: str) -> list[str]:
    """Files the goal names by path, file name or dotted module."""
    named: list[str] = []
    for token in re.findall(r"[\w./-]+", goal):
        token = token.strip("./")
        if not token:
            continue
        if token in repo.sizes:
            named.append(token)
            continue
        if "." in token and token in repo.modules and not token.endswith(".py"):
            named.append(repo.modules[token])
            continue
        if "." in PurePosixPath(token).name:
            named += [p for p in repo.files if p.endswith(f"/{token}") or p == token][:3]
    return list(dict.fromkeys(named))


def select_context(
    root: Path,
    *,
    goal: str,
    scope: Iterable[str] = (),
    files: Iterable[str] = (),
    budget_tokens: int = 30_000,
    constitution: Iterable[str] = CONSTITUTION_FILES,
) -> Selection:
    """Choose the files an agent working on *goal* should read first."""
    repo = Repository(root)
    selection = Selection(
        budget_tokens=budget_tokens, repo_tokens=sum(repo.tokens(p) for p in repo.files)
    )
    candidates: dict[str, Pick] = {}

    def offer(path: str, tier: str, reason: str, score: float = 0.0) -> None:
        if path not in repo.sizes:
            return
        current = candidates.get(path)
        better = current is None or (TIERS.index(tier), -score) < (
            TIERS.index(current.tier),
            -current.score,
        )
        if better:
            candidates[path] = Pick(path, reason, tier, repo.tokens(path), score)

    for name in constitution:
        offer(name, "constitution", "project principles every agent reads first")
    for pattern in files:
        matched = [p for p in repo.files if first_match([pattern], p)] if pattern else []
        if not matched:
            selection.missing.append(pattern)
        for path in matched:
            offer(path, "named", "named in the task's context.files")
    for path in _goal_paths(repo, goal):
        offer(path, "goal", "named in the goal")
    for path, name in _goal_definitions(repo, goal):
        offer(path, "goal", f"defines {name}, named in the goal")
    scope = list(scope)
    for pattern in scope:
        if _is_concrete(pattern):
            if pattern in repo.sizes:
                offer(pattern, "scope", "a file in the task's scope")
            elif not _is_test(pattern):
                selection.missing.append(f"{pattern} (in scope; a new file?)")

    keywords = words(goal)
    scored = _keyword_scores(repo, keywords, scope)
    importers: dict[str, list[str]] = {}
    for path in repo.files:
        for target in repo.imports(path):
            importers.setdefault(target, []).append(path)

    def neighbours(seed: str) -> list[tuple[str, str, str]]:
        tests = [(u, "test", f"tests {seed}") for u in importers.get(seed, []) if _is_test(u)]
        return tests + [(t, "import", f"imported by {seed}") for t in repo.imports(seed)]

    # Neighbours of what the task names rank as tests and imports; neighbours of a keyword
    # match rank just below that match, never above it.
    for seed in [p for p in candidates if candidates[p].tier != "constitution"]:
        for path, tier, reason in neighbours(seed):
            offer(path, tier, reason)
    for path, score in scored:
        offer(path, "keyword", f"shares {score:.1f} of the goal's words", score)
    for seed, score in scored[:5]:
        for path, _, reason in neighbours(seed):
            offer(path, "keyword", reason, score * 0.5)

    def rank(pick: Pick) -> tuple[int, float, bool, int, str]:
        # On equal merit, the code before its tests, then the smaller file.
        return (TIERS.index(pick.tier), -pick.score, _is_test(pick.path), pick.tokens, pick.path)

    used = 0
    for pick in sorted(candidates.values(), key=rank):
        if used + pick.tokens <= budget_tokens:
            selection.picked.append(pick)
            used += pick.tokens
        else:
            selection.skipped.append(pick)
    return selection


def _keyword_scores(
    repo: Repository, keywords: set[str], scope: list[str]
) -> list[tuple[str, float]]:
    """Files sharing the goal's words, best first: path words count more than content."""
    if not keywords:
        return []
    scores: list[tuple[str, float]] = []
    for path in repo.files:
        if PurePosixPath(path).suffix not in _TEXT_SUFFIXES:
            continue
        in_path = len(keywords & words(path))
        counts = Counter(w for w in words(repo.text(path)) if w in keywords)
        in_text = len(counts) / len(keywords)
        score = 2.0 * in_path + in_text
        if scope and first_match(scope, path):
            score += 1.0
        if score > 0:
            scores.append((path, round(score, 3)))
    scores.sort(key=lambda item: (-item[1], item[0]))
    return scores
