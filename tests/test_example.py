"""The bundled example is what examples/make_example.py makes, and its repository starts with
the failing test the first task fixes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def load_script() -> object:
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLES / "make_example.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_replays_are_what_the_script_makes(tmp_path: Path) -> None:
    load_script().write_replays(tmp_path)  # type: ignore[attr-defined]
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in (EXAMPLES / "replays").iterdir())
    for name in made:
        assert (tmp_path / name).read_text() == (EXAMPLES / "replays" / name).read_text(), name


def test_the_bundle_holds_the_scripts_files_and_one_failing_test(tmp_path: Path) -> None:
    script = load_script()
    clone = tmp_path / "webshop"
    subprocess.run(["git", "clone", "-q", str(EXAMPLES / "webshop.bundle"), str(clone)],
                   check=True)  # fmt: skip
    for name, text in script.FILES.items():  # type: ignore[attr-defined]
        assert (clone / name).read_text() == text, name
    tests = subprocess.run([sys.executable, "-m", "unittest", "discover", "-q"], cwd=clone,
                           capture_output=True, text=True)  # fmt: skip
    assert "FAILED (failures=1)" in tests.stderr
