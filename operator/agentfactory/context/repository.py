"""The files of a git working tree, and which commit (if any) they are exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

#: Files read as text: ranked by their words, outlined when large.
TEXT_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".rb", ".md", ".rst",
    ".txt", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".sql", ".sh", ".html", ".css",
    ".c", ".h", ".cc", ".cpp", ".hpp", ".kt", ".kts", ".swift", ".php", ".cs", ".scala",
    ".mjs", ".cjs", ".vue", ".svelte", ".scss", ".pyx", ".proto", ".tf", ".j2", ".xml",
    ".gradle", ".lua", ".pl", ".r", ".graphql",
}  # fmt: skip
#: Text that describes rather than does: it ranks below code that matches as well.
PROSE_SUFFIXES = {".md", ".rst", ".txt", ".html"}
JS_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs")
#: A file's text is read up to this many bytes (minified bundles and data dumps are longer).
MAX_TEXT_BYTES = 400_000


def estimate_tokens(size_bytes: int) -> int:
    """The project's token estimate for a file of *size_bytes*: four bytes a token."""
    return max(1, size_bytes // 4)


class NotARepositoryError(Exception):
    """The directory is not a git working tree; the message says so and what to do."""


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - fixed argv
        ["git", "-C", str(root), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        check=False,
    )


class Repository:
    """The tracked files of a git working tree, read lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        found = _git(self.root, "ls-files", "-z")
        if found.returncode != 0:
            said = found.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise NotARepositoryError(
                f"{root} is not a git working tree ({said[-1] if said else 'git failed'});"
                " run this inside one, or name it with --repo DIR"
            )
        listed = found.stdout.decode("utf-8", errors="replace")
        # A symbolic link is the file it points to: shown once, under its own name.
        self.files = sorted(
            p
            for p in listed.split("\0")
            if p and (self.root / p).is_file() and not (self.root / p).is_symlink()
        )
        self.sizes = {p: (self.root / p).stat().st_size for p in self.files}
        self._text: dict[str, str] = {}
        self.modules = python_modules(self.files)

    def text(self, path: str) -> str:
        """The file's text ('' for binary files and what is not a text suffix)."""
        if path not in self._text:
            if PurePosixPath(path).suffix not in TEXT_SUFFIXES and "." in PurePosixPath(path).name:
                return ""
            data = (self.root / path).read_bytes()[:MAX_TEXT_BYTES]
            self._text[path] = "" if b"\0" in data[:4096] else data.decode("utf-8", "replace")
        return self._text[path]

    def tokens(self, path: str) -> int:
        return estimate_tokens(self.sizes[path])

    def commit(self) -> str | None:
        """The commit the tracked files are exactly, or None (no commit yet, or changes)."""
        head = _git(self.root, "rev-parse", "--verify", "-q", "HEAD")
        if head.returncode != 0:
            return None
        changed = _git(self.root, "status", "--porcelain", "--untracked-files=no")
        if changed.returncode != 0 or changed.stdout.strip():
            return None
        return head.stdout.decode().strip()


def python_modules(files: list[str]) -> dict[str, str]:
    """Dotted module name to file, for every Python file under any source root."""
    modules: dict[str, str] = {}
    for path in files:
        if not path.endswith(".py"):
            continue
        parts = list(PurePosixPath(path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        # A file is importable from every prefix directory (src/, operator/, the root).
        for start in range(len(parts)):
            modules.setdefault(".".join(parts[start:]), path)
    return modules


def normalise(path: PurePosixPath) -> str:
    """*path* with `.` and `..` resolved, as a repository-relative string."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def is_test(path: str) -> bool:
    name = PurePosixPath(path).name
    return (
        name.startswith("test_")
        or name.endswith(("_test.py", "_test.go"))
        or ".test." in name
        or ".spec." in name
        or "/tests/" in f"/{path}"
        or "/__tests__/" in f"/{path}"
    )
