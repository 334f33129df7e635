"""What each file defines, references and imports, and its outline: the code graph's raw facts.

Python is read with `ast`; other languages with a definition pattern and their identifiers
(best effort: good enough to link files, not to type-check them).
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from agentfactory.context.repository import JS_SUFFIXES, normalise
from agentfactory.context.tokens import identifiers

_DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([a-z]+\))?[ \t]+)?(?:async[ \t]+)?"
    r"(?:def|class|function|func|fn|const|let|var|type|interface|struct|enum|trait|module)"
    r"[ \t]+(?:\([^)]*\)[ \t]*)?([A-Za-z_][A-Za-z0-9_]*)",
    re.M,
)
_JS_IMPORT = re.compile(r"""(?:from\s+|import\s*\(?\s*|require\s*\(\s*)['"](\.{1,2}/[^'"]+)['"]""")


@dataclass(frozen=True)
class Entry:
    """One definition in a file's outline: its lines (1-based, inclusive), its nesting depth,
    and how many of its first lines make its header (decorators, signature, docstring's first
    line)."""

    start: int
    end: int
    depth: int
    header: int


@dataclass
class Facts:
    defines: set[str] = field(default_factory=set)
    references: Counter[str] = field(default_factory=Counter)
    imports: list[str] = field(default_factory=list)
    outline: list[Entry] = field(default_factory=list)


def facts_of(path: str, text: str, modules: dict[str, str], sizes: dict[str, int]) -> Facts:
    if path.endswith((".py", ".pyi")):
        try:
            return _python(path, ast.parse(text), modules)
        except (SyntaxError, ValueError, RecursionError):
            pass
    return _other(path, text, sizes)


def _python(path: str, tree: ast.Module, modules: dict[str, str]) -> Facts:
    facts = Facts()
    package = list(PurePosixPath(path).parent.parts)
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        facts.defines.update(t.id for t in targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            facts.references[node.id] += 1
        elif isinstance(node, ast.Attribute):
            facts.references[node.attr] += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            facts.defines.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            facts.imports += _python_imports(node, package, modules, path)
            facts.references.update(a.name.split(".")[-1] for a in node.names)
    facts.imports = list(dict.fromkeys(facts.imports))
    facts.outline = _python_outline(tree)
    return facts


def _python_imports(
    node: ast.Import | ast.ImportFrom, package: list[str], modules: dict[str, str], path: str
) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = package[: len(package) - node.level + 1] if node.level > 1 else package
            base = ".".join([*anchor, base] if base else anchor)
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [t for t in (modules.get(name) for name in names) if t and t != path]


def _python_outline(tree: ast.Module) -> list[Entry]:
    entries: list[Entry] = []

    def visit(body: list[ast.stmt], depth: int) -> None:
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            first = node.body[0]
            header = first.lineno - start
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                header += 1  # the docstring's first line says what the definition is for
            end = node.end_lineno or node.lineno
            entries.append(Entry(start, end, depth, max(1, header)))
            visit(node.body, depth + 1)

    visit(tree.body, 0)
    return entries


def _other(path: str, text: str, sizes: dict[str, int]) -> Facts:
    facts = Facts(references=Counter(identifiers(text)))
    line, seen = 1, 0
    for match in _DEFINITION.finditer(text):
        facts.defines.add(match.group(1))
        line += text.count("\n", seen, match.start())
        seen = match.start()
        facts.outline.append(Entry(line, line, 0, 1))
    if path.endswith(JS_SUFFIXES):
        here = PurePosixPath(path).parent
        for spec in _JS_IMPORT.findall(text):
            base = normalise(here / spec)
            candidates = [base, *[base + s for s in JS_SUFFIXES]]
            candidates += [f"{base}/index{s}" for s in JS_SUFFIXES]
            facts.imports += [c for c in candidates if c in sizes][:1]
    return facts
