"""Weakened tests, found by structure: each test function of a Python test file compared on
the base and the head, assertion by assertion.

Counting lines (the guardrail before this one) misses what agents do to turn CI green: an
assertion replaced by `assert True`, an exact comparison loosened to `is not None`, an
expected value changed to what the broken code returns, an early `return`, a skip, a test
renamed out of collection, an exception broadened. Here every assertion gets a strength
(exact > ordered or membership > merely present > constant) keyed by what it asserts about,
and a test is flagged when an assertion about the same thing got weaker, vanished, became
unreachable, or when the test stopped running. A refactor that keeps every assertion (a
rename to another `test_` name, a helper, `parametrize`) or makes one stronger is not flagged.

Pure: it parses source text with `ast` and never runs it. Parse only in the sandbox (the CI
pod), never in the operator's process: a hostile file can make the parser recurse deeply.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

#: Strengths of an assertion, weakest first.
CONSTANT, PRESENT, LOOSE, EXACT = 0, 1, 2, 3
_STRENGTH_NAMES = {CONSTANT: "a constant", PRESENT: "that a value merely exists",
                   LOOSE: "an ordering or membership", EXACT: "an exact value"}  # fmt: skip
_BROAD = {"Exception", "BaseException"}
_SKIPS = {"skip", "skipif", "xfail", "skipIf", "skipUnless", "expectedFailure"}


@dataclass(frozen=True)
class Weakening:
    """One weakened test."""

    test: str
    kind: str
    """removed, renamed-out, constant, looser, expected-changed, early-return, skipped,
    broadened, swallowed, fewer-assertions."""
    message: str
    line: int | None = None


@dataclass(frozen=True)
class _Assertion:
    subject: str
    """What it asserts about (the left side, or the call's first argument), as source."""
    strength: int
    expected: str | None
    """The exact value it expects, as source, when it expects one."""
    line: int


@dataclass
class _Test:
    name: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    assertions: list[_Assertion]
    raises: list[tuple[str, str]]
    """(what it expects raised, the `match` it gives or '')."""
    skipped: bool
    returns_early: int | None
    swallows: int | None


def _source(node: ast.AST | None) -> str:
    return "" if node is None else ast.unparse(node)


def _compare(test: ast.expr) -> tuple[str, int, str | None]:
    """(subject, strength, expected) of an `assert` expression."""
    if isinstance(test, ast.Constant):
        return "", CONSTANT, None
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        op, right = test.ops[0], test.comparators[0]
        subject = _source(test.left)
        if (
            isinstance(op, (ast.Is, ast.IsNot))
            and isinstance(right, ast.Constant)
            and (right.value is None)
        ):
            return subject, PRESENT, None
        if isinstance(op, (ast.Eq, ast.Is)):
            return subject, EXACT, _source(right)
        return subject, LOOSE, None
    if isinstance(test, ast.Call) and _source(test.func) in ("isinstance", "callable", "bool",
                                                              "hasattr", "len"):  # fmt: skip
        return _source(test.args[0]) if test.args else "", PRESENT, None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _source(test.operand), PRESENT, None
    return _source(test), PRESENT, None


def _unittest(call: ast.Call) -> tuple[str, int, str | None] | None:
    """(subject, strength, expected) of a `self.assertX(...)` call, or None."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr.startswith("assert")):
        return None
    args = call.args
    subject = _source(args[0]) if args else ""
    if func.attr in ("assertEqual", "assertEquals", "assertIs", "assertListEqual",
                     "assertDictEqual", "assertCountEqual", "assertAlmostEqual"):  # fmt: skip
        return subject, EXACT, _source(args[1]) if len(args) > 1 else None
    if func.attr in ("assertIsNotNone", "assertTrue", "assertIsInstance", "assertFalse"):
        if args and isinstance(args[0], ast.Constant):
            return "", CONSTANT, None
        return subject, PRESENT, None
    if func.attr.startswith("assertRaises"):
        return None
    return subject, LOOSE, None


def _raised(item: ast.withitem | ast.Call) -> tuple[str, str] | None:
    call = item.context_expr if isinstance(item, ast.withitem) else item
    if not isinstance(call, ast.Call):
        return None
    name = _source(call.func)
    if not name.endswith(("raises", "assertRaises")):
        return None
    match = next((_source(k.value) for k in call.keywords if k.arg == "match"), "")
    return (_source(call.args[0]) if call.args else ""), match


def _test(node: ast.FunctionDef | ast.AsyncFunctionDef, helpers: dict[str, int]) -> _Test:
    """A test's assertions; a call of a module helper that asserts counts as its assertions
    (at the helper's strength, about what the call passes it)."""
    assertions: list[_Assertion] = []
    raises: list[tuple[str, str]] = []
    returns_early = swallows = None
    last_assert = 0
    for child in ast.walk(node):
        if isinstance(child, ast.Assert):
            subject, strength, expected = _compare(child.test)
            assertions.append(_Assertion(subject, strength, expected, child.lineno))
            last_assert = max(last_assert, child.lineno)
        elif isinstance(child, ast.Call):
            found = _unittest(child)
            helper = child.func.id if isinstance(child.func, ast.Name) else ""
            if helper in helpers:
                assertions.append(_Assertion(f"{helper}(...)", helpers[helper], None,
                                             child.lineno))  # fmt: skip
                last_assert = max(last_assert, child.lineno)
            if found is not None:
                assertions.append(_Assertion(*found, child.lineno))
                last_assert = max(last_assert, child.lineno)
            raised = _raised(child) if _source(child.func).endswith("assertRaises") else None
            if raised is not None:
                raises.append(raised)
        elif isinstance(child, ast.With | ast.AsyncWith):
            raises += [r for item in child.items if (r := _raised(item)) is not None]
        elif isinstance(child, ast.Try):
            for handler in child.handlers:
                caught = _source(handler.type)
                passes = all(isinstance(s, ast.Pass) for s in handler.body)
                if passes and caught in ("", "AssertionError", "Exception", "BaseException"):
                    swallows = handler.lineno
    for statement in node.body:
        if isinstance(statement, ast.Return) and statement.lineno < last_assert:
            returns_early = statement.lineno
    decorators = [_source(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
    calls = [_source(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)]
    skipped = any(d.rsplit(".", 1)[-1] in _SKIPS for d in decorators) or any(
        c in ("pytest.skip", "pytest.xfail", "self.skipTest") for c in calls)  # fmt: skip
    return _Test(node.name, node, assertions, raises, skipped, returns_early, swallows)


def _tests(source: str) -> dict[str, _Test]:
    """The functions of a module (top level and in classes), by qualified name."""
    module = ast.parse(source)
    top = [n for n in module.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    helpers = {}
    for function in top:
        if not function.name.startswith("test"):
            strengths = [a.strength for a in _test(function, {}).assertions]
            if strengths:
                helpers[function.name] = max(strengths)
    found: dict[str, _Test] = {}
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = _test(node, helpers)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = _test(item, helpers)
    return found


def _cases(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """How many cases a test runs: the product of its `parametrize` lists' lengths."""
    cases = 1
    for decorator in node.decorator_list:
        if (isinstance(decorator, ast.Call) and _source(decorator.func).endswith("parametrize")
                and len(decorator.args) > 1
                and isinstance(decorator.args[1], (ast.List, ast.Tuple))):  # fmt: skip
            cases *= max(1, len(decorator.args[1].elts))
    return cases


def _collected(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test")


def _body(test: _Test) -> str:
    return ast.dump(ast.Module(body=test.node.body, type_ignores=[]))


def weakened(base: str, head: str, *, code_changed: bool) -> list[Weakening]:
    """How the tests of a file got weaker from *base* to *head* (empty: they did not).
    *code_changed*: the same patch changes code outside the tests, so a changed expected
    value may be bent to fit it."""
    before = {n: t for n, t in _tests(base).items() if _collected(n)}
    after_all = _tests(head)
    after = {n: t for n, t in after_all.items() if _collected(n)}
    found: list[Weakening] = []
    # Tests gone under their names may live on in tests new to the file (a rename, tests
    # folded into one parametrized test): as many assertions, counting each case.
    gone = sum(len(t.assertions) for n, t in before.items() if n not in after)
    arrived = sum(len(t.assertions) * _cases(t.node) for n, t in after.items() if n not in before)
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            twin = next((n for n, t in after_all.items() if not _collected(n)
                         and _body(t) == _body(old)), None)  # fmt: skip
            if twin is not None:
                found.append(Weakening(name, "renamed-out", f"{name} was renamed {twin}, which"
                                       " the test runner does not collect"))  # fmt: skip
                continue
            if arrived < gone or not old.assertions:
                found.append(Weakening(name, "removed", f"{name} was removed with its"
                                       f" {len(old.assertions)} assertions"))  # fmt: skip
            continue
        found += _compared(name, old, new, code_changed=code_changed)
    return found


def _compared(name: str, old: _Test, new: _Test, *, code_changed: bool) -> list[Weakening]:
    found: list[Weakening] = []
    if new.skipped and not old.skipped:
        found.append(Weakening(name, "skipped", f"{name} is now skipped or expected to fail",
                               new.node.lineno))  # fmt: skip
    if new.returns_early is not None and old.returns_early is None:
        found.append(Weakening(name, "early-return", f"{name} returns before its assertions"
                               " run", new.returns_early))  # fmt: skip
    if new.swallows is not None and old.swallows is None:
        found.append(Weakening(name, "swallowed", f"{name} catches and ignores failures",
                               new.swallows))  # fmt: skip
    for raised, match in old.raises:
        loose = [(r, m) for r, m in new.raises if (r, m) != (raised, match)]
        if (raised, match) in new.raises:
            continue
        if any(r in _BROAD and raised not in _BROAD for r, _ in loose):
            found.append(Weakening(name, "broadened", f"{name} now accepts any exception where"
                                   f" it expected {raised}"))  # fmt: skip
        elif any(r == raised and match and not m for r, m in loose):
            found.append(Weakening(name, "broadened", f"{name} no longer checks the message of"
                                   f" {raised} ({match})"))  # fmt: skip
    by_subject: dict[str, _Assertion] = {}  # the strongest assertion about each subject
    for a in new.assertions:
        if a.subject not in by_subject or a.strength > by_subject[a.subject].strength:
            by_subject[a.subject] = a
    constants = [a for a in new.assertions if a.strength == CONSTANT]
    helped = max((a.strength for a in new.assertions if a.subject.endswith("(...)")), default=-1)
    for was in old.assertions:
        now = by_subject.get(was.subject)
        if now is None and helped >= was.strength:
            continue  # a helper the test now calls asserts it
        if now is None:
            if constants and was.strength > CONSTANT:
                said = f"{name} asserts a constant where it asserted {_source_of(was)}"
                found.append(Weakening(name, "constant", said, constants[0].line))
            elif len(new.assertions) < len(old.assertions):
                said = f"{name} no longer asserts {_source_of(was)}"
                found.append(Weakening(name, "fewer-assertions", said, was.line))
            continue
        if now.strength < was.strength:
            said = (f"{name} now asserts {_STRENGTH_NAMES[now.strength]} about {was.subject}"
                    f" where it asserted {_STRENGTH_NAMES[was.strength]}")  # fmt: skip
            found.append(Weakening(name, "looser", said, now.line))
        elif code_changed and was.expected is not None and now.expected not in (
            None, was.expected,
        ):  # fmt: skip
            said = (f"{name} now expects {now.expected} of {was.subject} where it expected"
                    f" {was.expected}, in the patch that changes the code under test")  # fmt: skip
            found.append(Weakening(name, "expected-changed", said, now.line))
    return found


def _source_of(assertion: _Assertion) -> str:
    if assertion.expected is not None:
        return f"{assertion.subject} == {assertion.expected}"
    return f"{_STRENGTH_NAMES[assertion.strength]} about {assertion.subject}"
