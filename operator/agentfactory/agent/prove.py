"""Tests that prove the fix, checked in the CI sandbox on the exact head.

Break/fix: the tests the patch adds or changes must fail on the base with only the patch's
test changes applied, and pass on the head; a test that passes on the base proves nothing.
And weakening by structure: each changed Python test file compared on the base and the head
(`core.weakening`). Both run here, where CI runs, never in the operator's process: they run
and parse code the agent wrote.

The patch is the head's last commit (the operator commits each accepted patch on its base as
one commit), so the base is `HEAD^`. Python tests are run with pytest, by test id, with a
JUnit report to tell each test's outcome; another runner is run through a command template
(`{tests}` replaced by the test files), once per file.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath

from agentfactory.core.globs import first_match
from agentfactory.core.task import Proof, ProvedTest, WeakenedTest
from agentfactory.core.weakening import weakened

#: How long one side (base or head) of the proof may run.
SIDE_SECONDS = 600


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,  # noqa: S603, S607
                          check=True).stdout  # fmt: skip


def _functions(source: str) -> dict[str, str]:
    """Each test function's id within its file (`name`, `Class::name`) and its code."""
    found: dict[str, str] = {}
    try:
        module = ast.parse(source)
    except SyntaxError:
        return found
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test"
        ):
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    item.name.startswith("test")
                ):
                    found[f"{node.name}::{item.name}"] = ast.dump(item)
    return found


def changed_tests(root: Path, test_paths: list[str]) -> tuple[dict[str, list[str]], bool]:
    """The test files the head's last commit adds or changes, each with the test ids it adds
    or changes (Python; other files: all of it, as `[]`); and whether it changes code too."""
    changes, code = _changes(root, test_paths)
    return _to_run(changes), code


def _to_run(changes: dict[str, tuple[list[str], str | None]]) -> dict[str, list[str]]:
    """The files with tests to run (a Python file whose tests were only removed has none)."""
    return {path: ids for path, (ids, _) in changes.items() if ids or not path.endswith(".py")}


def _changes(
    root: Path, test_paths: list[str]
) -> tuple[dict[str, tuple[list[str], str | None]], bool]:
    """`changed_tests`, each file with its source on the base (None: new, or not Python)."""
    names = _git(root, "diff", "--name-status", "--no-renames", "HEAD^", "HEAD").splitlines()
    tests: dict[str, tuple[list[str], str | None]] = {}
    code = False
    for line in names:
        status, path = line.split("\t", 1)
        if first_match(test_paths, path) is None:
            code = True
            continue
        if status == "D":
            continue
        if not path.endswith(".py"):
            tests[path] = ([], None)
            continue
        head = _functions((root / path).read_text(encoding="utf-8", errors="replace"))
        try:
            source: str | None = _git(root, "show", f"HEAD^:{path}")
        except subprocess.CalledProcessError:
            source = None
        base = _functions(source or "")
        changed = [name for name, code_of in head.items() if base.get(name) != code_of]
        if changed or set(base) - set(head):  # a test only removed is compared too
            tests[path] = (changed, source)
    return tests, code


def _pytest(root: Path, ids: list[str]) -> tuple[dict[str, str], float]:
    """Each test id's outcome (passed, failed, error, skipped) on the tree at *root*."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        began = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GITHUB_"))}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}", "-o", "junit_family=xunit1", *ids]  # fmt: skip
        subprocess.run(argv, cwd=root, env=env, capture_output=True, timeout=SIDE_SECONDS,  # noqa: S603
                       check=False)  # fmt: skip
        took = time.monotonic() - began
        outcomes = dict.fromkeys(ids, "error")  # not collected: the test does not exist there
        if not report.exists():
            return outcomes, took
        for case in ElementTree.parse(report).iter("testcase"):  # noqa: S314 - pytest's report
            path = case.get("file") or ""
            classname, name = case.get("classname", ""), case.get("name", "").split("[")[0]
            owner = classname.rsplit(".", 1)[-1]
            key = next((i for i in ids if i.startswith(path) and i.endswith(f"::{name}")
                        and (i.count("::") == 1 or f"::{owner}::" in i)), None)  # fmt: skip
            if key is None:
                continue
            kinds = {child.tag for child in case}
            outcome = ("failed" if "failure" in kinds else "error" if "error" in kinds
                       else "skipped" if "skipped" in kinds else "passed")  # fmt: skip
            if outcomes.get(key) in (None, "error", "passed") or outcome == "failed":
                outcomes[key] = outcome
        return outcomes, took


def _command(root: Path, template: str, files: list[str]) -> tuple[dict[str, str], float]:
    outcomes: dict[str, str] = {}
    began = time.monotonic()
    for path in files:
        command = template.replace("{tests}", shlex.quote(path))
        done = subprocess.run(command, shell=True, cwd=root, capture_output=True,  # noqa: S602 - the factory's own command
                              timeout=SIDE_SECONDS, check=False)  # fmt: skip
        outcomes[path] = "passed" if done.returncode == 0 else "failed"
    return outcomes, time.monotonic() - began


def prove(root: Path, test_paths: list[str], command: str | None = None) -> Proof:
    """Break/fix and weakening for the head checked out at *root*."""
    changes, code_changed = _changes(root, test_paths)
    tests = _to_run(changes)
    weakenings = []
    for path, (_, base_source) in changes.items():
        if base_source is None:
            continue  # a new file weakens nothing
        head_source = (root / path).read_text(encoding="utf-8", errors="replace")
        found = weakened(base_source, head_source, code_changed=code_changed)
        weakenings += [WeakenedTest(file=path, test=w.test, kind=w.kind, message=w.message,
                                    line=w.line) for w in found]  # fmt: skip
    if not tests:
        return Proof(verdict="no-tests", weakenings=weakenings,
                     message="the patch adds or changes no test; add one that fails without the"
                             " change")  # fmt: skip
    if command is None and importlib.util.find_spec("pytest") is None:
        return Proof(verdict="unproven", weakenings=weakenings,
                     message="pytest is not installed where CI runs, so the patch's tests"
                             " cannot be run on the base and the head; install agentfactory"
                             " there with its dependencies, or set tests.command")  # fmt: skip
    base_tree = Path(tempfile.mkdtemp(prefix="agentfactory-base-"))
    try:
        _git(root, "worktree", "add", "--quiet", "--detach", str(base_tree), "HEAD^")
        for path in tests:  # only the patch's test changes, on the base
            target = base_tree / PurePosixPath(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / path, target)
        if command:
            files = list(tests)
            base, base_seconds = _command(base_tree, command, files)
            head, head_seconds = _command(root, command, files)
        else:
            ids = [f"{path}::{test}" for path, names in tests.items() for test in names]
            base, base_seconds = _pytest(base_tree, ids)
            head, head_seconds = _pytest(root, ids)
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(base_tree)],  # noqa: S603, S607
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(base_tree, ignore_errors=True)
    proved = [ProvedTest(test=t, base=base.get(t, "error"), head=head.get(t, "error"))
              for t in base]  # fmt: skip
    unproven = [p.test for p in proved if p.base == "passed"]
    failing = [p.test for p in proved if p.head != "passed"]
    if unproven:
        message = (f"these tests pass without the change, so they prove nothing:"
                   f" {', '.join(unproven)}; make each fail on the base and pass with the"
                   " fix")  # fmt: skip
    elif failing:
        message = f"these tests do not pass on the head: {', '.join(failing)}"
    else:
        message = f"{len(proved)} tests fail on the base and pass on the head"
    verdict = "unproven" if unproven or failing else "proven"
    return Proof(verdict=verdict, tests=proved, weakenings=weakenings, message=message,
                 base_seconds=round(base_seconds, 3),
                 head_seconds=round(head_seconds, 3))  # fmt: skip
