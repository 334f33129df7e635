"""parse_unified_diff on real `git diff` output: adds, edits, deletes, renames, binaries,
quoted paths, and line numbers on both sides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.gitutil import git

from agentfactory.core.diff import parse_unified_diff

if TYPE_CHECKING:
    from pathlib import Path


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.test")
    git(repo, "config", "user.name", "t")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("a = 1\nb = 2\nc = 3\nd = 4\n")
    (repo / "old.txt").write_text("x\n" * 20)
    (repo / "gone.py").write_text("def f():\n    return 1\n")
    (repo / "blob.bin").write_bytes(b"\x00\x01")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def test_parses_every_kind_of_change_from_real_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "src" / "app.py").write_text("a = 1\nB = 2\nc = 3\nd = 4\ne = 5\n")
    (repo / "new file.py").write_text("print('hi')\n")
    (repo / "gone.py").unlink()
    git(repo, "mv", "old.txt", "renamed.txt")
    (repo / "blob.bin").write_bytes(b"\x00\x02\x03")
    (repo / "caf\u00e9.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    text = git(repo, "diff", "--cached", "-M", "HEAD")

    files = {f.path: f for f in parse_unified_diff(text).files}

    app = files["src/app.py"]
    assert app.status == "modified"
    assert [(line.number, line.text) for line in app.removed] == [(2, "b = 2")]
    assert [(line.number, line.text) for line in app.added] == [(2, "B = 2"), (5, "e = 5")]
    assert files["new file.py"].status == "added"
    assert files["new file.py"].added[0].text == "print('hi')"
    assert files["gone.py"].status == "deleted"
    assert len(files["gone.py"].removed) == 2
    renamed = files["renamed.txt"]
    assert renamed.status == "renamed" and renamed.old_path == "old.txt"
    assert renamed.paths == ["old.txt", "renamed.txt"]
    assert files["blob.bin"].binary
    assert "caf\u00e9.py" in files, f"quoted path not decoded: {sorted(files)}"


def test_an_empty_diff_is_an_empty_patch() -> None:
    assert parse_unified_diff("").files == []


def test_lines_that_look_like_headers_inside_a_hunk_are_content(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "src" / "app.py").write_text("a = 1\n-- not a header\n++ nor this\nc = 3\nd = 4\n")
    text = git(repo, "diff")
    app = parse_unified_diff(text).files[0]
    assert [line.text for line in app.added] == ["-- not a header", "++ nor this"]
    assert [line.text for line in app.removed] == ["b = 2"]


def test_a_symlink_is_parsed_with_its_target(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "src" / "passwd").symlink_to("/etc/passwd")
    (repo / "src" / "sibling").symlink_to("app.py")
    (repo / "old.txt").unlink()
    (repo / "old.txt").symlink_to("../outside")  # a file that becomes a link
    (repo / "gone.py").write_text("def f():\n    return 2\n")
    git(repo, "add", "-A")
    files = {f.path: f for f in parse_unified_diff(git(repo, "diff", "--cached", "HEAD")).files}
    assert files["src/passwd"].symlink == "/etc/passwd"
    assert files["src/sibling"].symlink == "app.py"
    assert files["old.txt"].symlink == "../outside"
    assert files["gone.py"].symlink is None
