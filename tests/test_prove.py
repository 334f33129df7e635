"""Break/fix in the CI sandbox (`agent.prove`): on real git repositories, the tests a patch
adds or changes are run on the base with only the patch's test changes, and on the head, with
pytest by test id or with a factory's command template; weakened tests are found too."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

from testbed.gitutil import git

from agentfactory.agent.prove import changed_tests, prove

if TYPE_CHECKING:
    from pathlib import Path

TESTS = ["tests/**"]
BUGGY = "def cart_total(items):\n    return sum(price for price, quantity in items)\n"
FIXED = "def cart_total(items):\n    return sum(price * quantity for price, quantity in items)\n"
EMPTY = ("from shop.cart import cart_total\n\n\ndef test_empty():\n"
         "    assert cart_total([]) == 0\n")  # fmt: skip
QUANTITY = "\n\ndef test_quantity():\n    assert cart_total([(250, 2)]) == 500\n"


def shop(tmp_path: Path, files: dict[str, str]) -> Path:
    """A repository whose base has the bug, and a head commit with *files* on top."""
    repo = tmp_path / "shop"
    (repo / "shop").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "shop" / "__init__.py").write_text("")
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "shop" / "cart.py").write_text(BUGGY)
    (repo / "tests" / "test_cart.py").write_text(EMPTY)
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    for config in (("user.email", "t@example.test"), ("user.name", "t")):
        git(repo, "config", *config)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    for path, text in files.items():
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the patch")
    return repo


def test_a_new_test_that_fails_on_the_base_and_passes_on_the_head_proves_the_fix(
    tmp_path: Path,
) -> None:
    repo = shop(tmp_path, {"shop/cart.py": FIXED, "tests/test_cart.py": EMPTY + QUANTITY})
    proof = prove(repo, TESTS)
    assert proof.verdict == "proven", proof.message
    assert [(t.test, t.base, t.head) for t in proof.tests] == [
        ("tests/test_cart.py::test_quantity", "failed", "passed")]  # fmt: skip
    assert proof.base_seconds > 0 and proof.head_seconds > 0
    assert git(repo, "worktree", "list").count("\n") == 0, "the base tree is gone"


def test_a_new_test_that_passes_on_the_base_proves_nothing_and_is_named(tmp_path: Path) -> None:
    also_empty = "\n\ndef test_empty_again():\n    assert cart_total([]) == 0\n"
    repo = shop(tmp_path, {"shop/cart.py": FIXED, "tests/test_cart.py": EMPTY + also_empty})
    proof = prove(repo, TESTS)
    assert proof.verdict == "unproven"
    assert "tests/test_cart.py::test_empty_again" in proof.message
    assert "pass without the change" in proof.message


def test_a_patch_without_tests_proves_nothing(tmp_path: Path) -> None:
    proof = prove(shop(tmp_path, {"shop/cart.py": FIXED}), TESTS)
    assert proof.verdict == "no-tests" and "adds or changes no test" in proof.message


def test_a_test_for_a_symbol_the_base_lacks_counts_as_failing_there(tmp_path: Path) -> None:
    new_test = ("from shop.cart import cart_count\n\n\ndef test_count():\n"
                "    assert cart_count([(1, 2)]) == 2\n")  # fmt: skip
    code = FIXED + "\n\ndef cart_count(items):\n    return sum(q for _, q in items)\n"
    repo = shop(tmp_path, {"shop/cart.py": code, "tests/test_count.py": new_test})
    proof = prove(repo, TESTS)
    assert proof.verdict == "proven", proof.message
    assert [(t.base, t.head) for t in proof.tests] == [("error", "passed")]


def test_a_weakened_test_is_reported_with_the_proof(tmp_path: Path) -> None:
    base_quantity = EMPTY + QUANTITY
    repo = shop(tmp_path, {"tests/test_cart.py": base_quantity})  # the base now has the test
    (repo / "shop" / "cart.py").write_text(BUGGY.replace("quantity in", "q in"))
    (repo / "tests" / "test_cart.py").write_text(base_quantity.replace("== 500", "is not None"))
    git(repo, "commit", "-qam", "weaken")
    proof = prove(repo, TESTS)
    assert [(w.test, w.kind) for w in proof.weakenings] == [("test_quantity", "looser")]
    assert proof.verdict == "unproven", "the loosened test passes on the base too"


def test_another_runner_is_run_through_the_factorys_command(tmp_path: Path) -> None:
    repo = shop(tmp_path, {"shop/cart.py": FIXED, "tests/test_cart.py": EMPTY + QUANTITY})
    command = f"{sys.executable} -m pytest -q -p no:cacheprovider {{tests}}"
    proof = prove(repo, TESTS, command)
    assert [(t.test, t.base, t.head) for t in proof.tests] == [
        ("tests/test_cart.py", "failed", "passed")]  # fmt: skip
    assert proof.verdict == "proven"


def test_only_the_tests_the_patch_touches_are_run(tmp_path: Path) -> None:
    repo = shop(tmp_path, {"shop/cart.py": FIXED, "tests/test_cart.py": EMPTY + QUANTITY})
    tests, code = changed_tests(repo, TESTS)
    assert tests == {"tests/test_cart.py": ["test_quantity"]} and code


def test_a_head_without_a_parent_is_said_not_to_be_proven(tmp_path: Path) -> None:
    from agentfactory.agent.entrypoint import run_checks
    from agentfactory.core.handoff import CheckReport

    repo = tmp_path / "one"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "tests").mkdir()
    (repo / "tests" / "test_one.py").write_text("def test_one():\n    assert 1 == 1\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "only")
    inputs = tmp_path / "input"
    inputs.mkdir()
    (inputs / "checks.json").write_text('[{"name": "true", "command": "true"}]')
    (inputs / "prove.json").write_text('{"mode": "required", "testPaths": ["tests/**"]}')
    out = tmp_path / "out" / "result.json"
    assert run_checks(input_dir=inputs, workspace=repo, output=out) == 0
    proof = CheckReport.model_validate_json(out.read_text()).proof
    assert proof is not None and proof.required and proof.verdict == "unproven"
    assert proof.message.startswith("the proof could not run:")


def test_a_test_deleted_from_its_file_is_found_in_the_sandbox(tmp_path: Path) -> None:
    # The file keeps its other tests and gains none: no test id changed, yet one is gone.
    repo = shop(tmp_path, {"tests/test_cart.py": EMPTY + QUANTITY})
    (repo / "shop" / "cart.py").write_text(FIXED)
    (repo / "tests" / "test_cart.py").write_text(EMPTY)
    git(repo, "commit", "-qam", "drop the test")
    proof = prove(repo, TESTS)
    assert [(w.test, w.kind) for w in proof.weakenings] == [("test_quantity", "removed")]


def test_a_plain_install_brings_what_the_ci_sandbox_proves_the_fix_with() -> None:
    # The fresh-clone demo (`pip install -e .`, no dev extra) proved nothing: every test was
    # an "error" on both sides, because pytest was only a development dependency.
    from importlib.metadata import requires

    wanted = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower()
              for r in requires("agentfactory") or [] if "extra ==" not in r}  # fmt: skip
    assert "pytest" in wanted
