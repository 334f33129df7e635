"""A patch as the policies see it: changed files with their added and removed lines.

:func:`parse_unified_diff` reads `git diff` output (the implementer's workspace diff against
the base commit), so the policies judge what the patch does, not what an agent claims.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from agentfactory.core.base import Model


class ChangedLine(Model):
    """A line added (numbered in the new file) or removed (numbered in the old file)."""

    number: int = Field(ge=1)
    """Line number."""
    text: str
    """Line content without the newline."""


class FileChange(Model):
    """One file in a patch."""

    path: str
    """Path after the change (for a deletion, the deleted path)."""
    old_path: str | None = None
    """Path before a rename."""
    status: Literal["added", "modified", "deleted", "renamed"] = "modified"
    """What happened to the file."""
    binary: bool = False
    """A binary change (no lines)."""
    symlink: str | None = None
    """The target, when the change leaves a symbolic link (git mode 120000)."""
    added: list[ChangedLine] = Field(default_factory=list)
    """Added lines."""
    removed: list[ChangedLine] = Field(default_factory=list)
    """Removed lines."""

    @property
    def paths(self) -> list[str]:
        """Every path the change touches (both sides of a rename)."""
        if self.old_path is None or self.old_path == self.path:
            return [self.path]
        return [self.old_path, self.path]


class Patch(Model):
    """A whole patch."""

    files: list[FileChange] = Field(default_factory=list)
    """Changed files."""

    @property
    def changed_lines(self) -> int:
        """Added plus removed lines."""
        return sum(len(f.added) + len(f.removed) for f in self.files)


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(path: str) -> str:
    # git quotes paths with unusual characters: "a\tb" or octal bytes "\303\251".
    if not (path.startswith('"') and path.endswith('"')):
        return path
    raw = bytearray()
    body = path[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                raw.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            raw.extend(_ESCAPES.get(nxt, nxt).encode())
            i += 2
            continue
        raw.extend(ch.encode())
        i += 1
    return raw.decode("utf-8", errors="replace")


def _strip_prefix(path: str) -> str | None:
    path = _unquote(path.strip())
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def parse_unified_diff(text: str) -> Patch:
    """Parse `git diff` output into a :class:`Patch`."""
    files: list[FileChange] = []
    links: list[FileChange] = []  # their one added line is the target
    current: FileChange | None = None
    old_line = new_line = 0
    in_hunk = False
    for line in text.splitlines():
        if line.startswith("diff --git "):
            match = re.match(r'^diff --git ("[^"]*"|\S+) ("[^"]*"|\S+)$', line)
            a_path = _strip_prefix(match.group(1)) if match else None
            b_path = _strip_prefix(match.group(2)) if match else None
            current = FileChange(path=b_path or a_path or "")
            files.append(current)
            in_hunk = False
            continue
        if current is None:
            continue
        if not in_hunk or line[:1] not in (" ", "+", "-", "\\"):
            if line.startswith(("new file mode 120000", "new mode 120000")):
                links.append(current)
            if line.startswith("new file mode"):
                current.status = "added"
            elif line.startswith("deleted file mode"):
                current.status = "deleted"
            elif line.startswith("rename from "):
                current.old_path = _unquote(line[len("rename from ") :])
                current.status = "renamed"
            elif line.startswith("rename to "):
                current.path = _unquote(line[len("rename to ") :])
            elif line.startswith(("Binary files ", "GIT binary patch")):
                current.binary = True
            elif line.startswith("--- ") and not in_hunk:
                old = _strip_prefix(line[4:])
                if old is None:
                    current.status = "added"
            elif line.startswith("+++ ") and not in_hunk:
                new = _strip_prefix(line[4:])
                if new is None:
                    current.status = "deleted"
                else:
                    current.path = new
            hunk = _HUNK.match(line)
            if hunk:
                old_line, new_line = int(hunk.group(1)), int(hunk.group(2))
                in_hunk = True
            continue
        if line.startswith("+"):
            current.added.append(ChangedLine(number=new_line, text=line[1:]))
            new_line += 1
        elif line.startswith("-"):
            current.removed.append(ChangedLine(number=old_line, text=line[1:]))
            old_line += 1
        elif line.startswith(" "):
            old_line += 1
            new_line += 1
    for link in links:
        link.symlink = link.added[0].text if link.added else ""
    return Patch(files=files)
