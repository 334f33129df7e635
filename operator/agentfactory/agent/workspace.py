"""The workspace an agent works in, and the only ways it can touch it.

Every path is resolved and confined: absolute paths, `..`, `.git` and symlinks that
leave the workspace are refused. Writes must also fall inside the task's `scope.paths` and
outside `protectedPaths`. Commands are either exactly one of the factory's checks (run
through the shell, as the factory wrote them) or an allow-listed program run without a shell,
with shell metacharacters refused; the implementer's shell runs anything, and what it changed
outside the scope is put back. Every command gets a scrubbed environment (no API keys or
tokens), a timeout and an output cap. Refusals raise :class:`ToolError`, whose message goes
back to the model so it can correct itself.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from agentfactory.core.globs import first_match
from agentfactory.core.handoff import OUTPUT_CAP, CheckRun

if TYPE_CHECKING:
    from agentfactory.core.common import Check

READ_CAP = 60_000
_SHELL_META = re.compile(r"[;&|$`<>(){}\\\n*?!~]")
#: Environment variables a command may see; everything else (keys, tokens) is dropped.
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "TERM")


class ToolError(Exception):
    """A refused or failed tool call; the message is for the model."""


@dataclass
class Workspace:
    """A git working tree with the task's rules attached."""

    root: Path
    scope: list[str] = field(default_factory=lambda: ["**"])
    protected: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    allowed_programs: tuple[str, ...] = ()
    writable: bool = False
    command_timeout: int = 600

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    # -- paths -------------------------------------------------------------------------

    def relative(self, path: str) -> str:
        """Normalise a model-given path to a repository-relative POSIX path, or refuse."""
        text = path.strip().replace("\\", "/")
        if text in ("", "."):
            return "."
        if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
            raise ToolError(f"{path!r} is absolute; use a path relative to the repository root")
        parts = PurePosixPath(text).parts
        if ".." in parts:
            raise ToolError(f"{path!r} leaves the workspace ('..'); stay inside the repository")
        if parts and parts[0] == ".git":
            raise ToolError(f"{path!r} is inside .git; use the git_diff tool instead")
        return str(PurePosixPath(*parts))

    def resolve(self, path: str) -> Path:
        """The real file for *path*, refusing anything that resolves outside the workspace."""
        rel = self.relative(path)
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"{path!r} resolves outside the workspace (a symlink?); refused")
        return target

    def check_writable(self, path: str) -> str:
        """*path* as a relative path when this role may write it, else refuse with the rule."""
        rel = self.relative(path)
        if not self.writable:
            raise ToolError("this role is read-only; report findings instead of editing")
        protected = first_match(self.protected, rel)
        if protected:
            raise ToolError(f"{rel} is protected ({protected!r}); agents may not change it")
        if first_match(self.scope, rel) is None:
            raise ToolError(f"{rel} is outside the task's scope {self.scope}; change only those")
        target = self.root / rel
        if target.is_symlink():
            raise ToolError(f"{rel} is a symlink; write the real file instead")
        self.resolve(rel)
        return rel

    # -- reading -----------------------------------------------------------------------

    def list_files(self, path: str = ".", limit: int = 400) -> str:
        base = self.relative(path)
        self.resolve(base)
        out = self._git("ls-files", "--cached", "--others", "--exclude-standard", "--", base)
        files = [line for line in out.splitlines() if line]
        shown = files[:limit]
        more = f"\n... and {len(files) - limit} more" if len(files) > limit else ""
        return "\n".join(shown) + more if shown else f"no files under {base}"

    def read_file(self, path: str, start: int = 1, end: int | None = None) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise ToolError(f"{path!r} is not a file; use list_files to find it")
        data = target.read_bytes()
        if b"\0" in data[:8192]:
            raise ToolError(f"{path!r} is a binary file")
        lines = data.decode("utf-8", errors="replace").splitlines()
        start = max(1, start)
        stop = len(lines) if end is None else min(len(lines), end)
        numbered = [f"{n:>5}  {lines[n - 1]}" for n in range(start, stop + 1)]
        text = "\n".join(numbered)
        if len(text) > READ_CAP:
            text = text[:READ_CAP] + "\n... (cut; read a smaller range)"
        return text or f"{path} is empty (or the range {start}-{stop} has no lines)"

    def search(self, pattern: str, path: str = ".", limit: int = 200) -> str:
        base = self.relative(path)
        self.resolve(base)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"bad regular expression {pattern!r}: {exc}") from None
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(self.root), "grep", "-n", "-I", "-E", "--untracked", "-e",  # noqa: S607
             pattern, "--", base],
            capture_output=True, text=True, timeout=60, env=_clean_env(), check=False,
        )  # fmt: skip
        if result.returncode not in (0, 1):
            raise ToolError(f"search failed: {result.stderr.strip()[:500]}")
        hits = result.stdout.splitlines()
        more = f"\n... and {len(hits) - limit} more matches" if len(hits) > limit else ""
        return "\n".join(hits[:limit]) + more if hits else "no matches"

    def git_diff(self, base: str | None = None) -> str:
        """The working tree's changes (including new files) against *base* or HEAD."""
        self._git("add", "--intent-to-add", "--all")
        diff = self._git("diff", base or "HEAD")
        return diff if len(diff) <= READ_CAP else diff[:READ_CAP] + "\n... (diff cut)"

    def full_diff(self, base: str | None = None) -> str:
        """The whole patch against *base* (uncut, binary-safe), for the result."""
        self._git("add", "--intent-to-add", "--all")
        return self._git("diff", "--binary", base or "HEAD")

    # -- writing -----------------------------------------------------------------------

    def write_file(self, path: str, content: str) -> str:
        rel = self.check_writable(path)
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(rel)  # the parents just made must still be inside
        target.write_text(content, encoding="utf-8")
        return f"wrote {rel} ({len(content.splitlines())} lines)"

    def replace_in_file(self, path: str, old: str, new: str) -> str:
        rel = self.check_writable(path)
        target = self.root / rel
        if not target.is_file():
            raise ToolError(f"{rel} does not exist; use write_file to create it")
        text = target.read_text(encoding="utf-8")
        count = text.count(old)
        if count != 1:
            raise ToolError(
                f"the text to replace occurs {count} times in {rel}; include more surrounding"
                " lines so it occurs exactly once"
            )
        target.write_text(text.replace(old, new, 1), encoding="utf-8")
        return f"replaced 1 occurrence in {rel}"

    # -- commands ----------------------------------------------------------------------

    def run_command(self, command: str) -> CheckRun:
        """Run a factory check (exactly as written) or an allow-listed program."""
        check = next((c for c in self.checks if c.command == command.strip()), None)
        if check is not None:
            return self._run(check.name, check.command, shell=True, timeout=check.timeout_seconds)  # noqa: S604 - checks are shell commands
        if _SHELL_META.search(command):
            raise ToolError(
                "shell metacharacters are not allowed; run one of the checks exactly, or a"
                f" plain command starting with one of {', '.join(self.allowed_programs)}"
            )
        argv = shlex.split(command)
        if not argv or argv[0] not in self.allowed_programs:
            allowed = [c.command for c in self.checks] + list(self.allowed_programs)
            raise ToolError(f"{command!r} is not allowed; allowed: {allowed}")
        return self._run(argv[0], argv, shell=False, timeout=self.command_timeout)

    def run_shell(self, command: str) -> str:
        """Run *command* in a shell in the workspace (pipes and all), with the scrubbed
        environment and the command timeout. What it changed outside the scope or in a
        protected path is put back as it was, and said: the shell may do anything a program
        may, but only changes inside the scope stay."""
        run = self._run("shell", ["/bin/sh", "-c", command], shell=False,
                        timeout=self.command_timeout)  # fmt: skip
        reverted = self._put_back_outside_the_scope()
        said = f"exit code {run.exit_code} ({run.status})\n{run.output_tail}"
        if reverted:
            said += ("\nput back as they were (outside the scope, or protected): "
                     + ", ".join(reverted))  # fmt: skip
        return said

    def _put_back_outside_the_scope(self) -> list[str]:
        status = self._git("status", "--porcelain", "-z", "--untracked-files=all")
        reverted = []
        for entry in status.split("\0"):
            if len(entry) < 4:
                continue
            code, path = entry[:2], entry[3:]
            try:
                self.check_writable(path)
                continue
            except ToolError:
                reverted.append(path)
            if code == "??":
                target = self.root / path
                if target.is_file() or target.is_symlink():
                    target.unlink()
            else:
                self._git("checkout", "HEAD", "--", path)
        return sorted(reverted)

    def run_checks(self) -> list[CheckRun]:
        """Every factory check, in order, on the workspace as it is."""
        runs = []
        for check in self.checks:
            timeout = check.timeout_seconds
            runs.append(self._run(check.name, check.command, shell=True, timeout=timeout))  # noqa: S604 - checks are shell commands
        return runs

    def _run(self, name: str, command: str | list[str], *, shell: bool, timeout: int) -> CheckRun:
        shown = command if isinstance(command, str) else shlex.join(command)
        proc = subprocess.Popen(  # noqa: S603 - checks are the factory's own shell commands
            command, shell=shell, cwd=self.root, env=_clean_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, text=True, errors="replace",
        )  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            tail = (output or "")[-OUTPUT_CAP:]
            return CheckRun(name=name, command=shown, exit_code=None, status="timeout",
                            output_tail=f"{tail}\n(killed after {timeout}s)")  # fmt: skip
        status = "passed" if proc.returncode == 0 else "failed"
        return CheckRun(name=name, command=shown, exit_code=proc.returncode, status=status,
                        output_tail=(output or "")[-OUTPUT_CAP:])  # fmt: skip

    def _git(self, *args: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(self.root), *args],  # noqa: S607 - git from PATH by design
            capture_output=True, text=True, timeout=120, env=_clean_env(), check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ToolError(f"git {args[0]} failed: {result.stderr.strip()[:500]}")
        return result.stdout


def _clean_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in _ENV_KEEP if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["GIT_TERMINAL_PROMPT"] = "0"
    # A same-size edit within the same second would otherwise run stale bytecode, and
    # __pycache__ files would land in the patch.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
