"""`agentfactory checkout`: the exact commit, and no credential left in the workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from testbed.fakes.github_api import FakeGitHub
from testbed.gitutil import git

from agentfactory.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "a.txt").write_text("one\n")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    first = git(seed, "rev-parse", "HEAD")
    (seed / "a.txt").write_text("two\n")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    return seed, first, git(seed, "rev-parse", "HEAD")


def test_checks_out_the_exact_commit_and_keeps_no_token(
    tmp_path: Path, repo: tuple[Path, str, str]
) -> None:
    seed, first, _ = repo
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text("ghs_secret_token\n")
    dest = tmp_path / "workspace"
    code = main(["checkout", "--repo", str(seed), "--ref", first, "--dest", str(dest),
                 "--credentials", str(creds)])  # fmt: skip
    assert code == 0
    assert (dest / "a.txt").read_text() == "one\n"
    assert git(dest, "rev-parse", "HEAD") == first
    leftovers = "".join(p.read_text(errors="ignore") for p in (dest / ".git").rglob("*")
                        if p.is_file() and p.stat().st_size < 100_000)  # fmt: skip
    assert "ghs_secret_token" not in leftovers
    assert "c2VjcmV0" not in leftovers and "extraHeader" not in leftovers


def test_a_missing_commit_fails_without_showing_the_token(
    tmp_path: Path, repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, _, _ = repo
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text("ghs_secret_token")
    code = main(["checkout", "--repo", str(seed), "--ref", "f" * 40, "--dest",
                 str(tmp_path / "w"), "--credentials", str(creds)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "git checkout" in err and "ghs_secret_token" not in err


def test_credentials_the_forge_refuses_exit_3_as_a_set_up_error(
    tmp_path: Path, repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, first, _ = repo
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository("acme/shop", seed)
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "token").write_text("ghs_revoked_token")
        code = main(["checkout", "--repo", github.clone_url("acme/shop"), "--ref", first,
                     "--dest", str(tmp_path / "w"), "--credentials", str(creds)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.startswith("the forge refused the credentials (git clone:")
    assert "ghs_revoked_token" not in err
