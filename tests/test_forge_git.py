"""GitForge against real bare repositories: branches, patches, the three merge methods,
idempotency (every call twice), a pinned head against a racing push, a moved base rebased
cleanly, and a conflict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from testbed.gitutil import git

from agentfactory.forge.git import BranchRefusedError, GitForge, MergeOutcome

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with one commit on main, pushed from a seed clone."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    git(seed, "config", "user.email", "s@example.test")
    git(seed, "config", "user.name", "seed")
    (seed / "app.py").write_text("def greet():\n    return 'hi'\n")
    (seed / "notes.txt").write_text("one\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "base")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare


def forge(tmp_path: Path, remote: Path) -> GitForge:
    return GitForge(remote=str(remote), workdir=tmp_path / "forge")


def diff_of(tmp_path: Path, remote: Path, name: str, edit: dict[str, str]) -> tuple[str, str]:
    """(base sha, diff) for editing files in a throwaway clone."""
    work = tmp_path / name
    git(tmp_path, "clone", "-q", str(remote), str(work))
    for path, text in edit.items():
        (work / path).write_text(text)
    git(work, "add", "-A")
    return git(work, "rev-parse", "HEAD"), git(work, "diff", "--cached", "--binary", "HEAD") + "\n"


def pushed(tmp_path: Path, remote: Path, edit: dict[str, str],
           message: str) -> tuple[GitForge, str, str]:  # fmt: skip
    """A forge, and *edit* committed on the base as *message* and pushed to factory/greet:
    (the forge, the base, the head)."""
    f = forge(tmp_path, remote)
    base, diff = diff_of(tmp_path, remote, "w", edit)
    head = f.commit_patch(base, diff, message)
    f.push_branch("factory/greet", head)
    return f, base, head


def push_to_main(tmp_path: Path, remote: Path, name: str, edit: dict[str, str]) -> str:
    work = tmp_path / name
    git(tmp_path, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "o@example.test")
    git(work, "config", "user.name", "other")
    for path, text in edit.items():
        (work / path).write_text(text)
    git(work, "commit", "-qam", f"{name} moves main")
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD")


def land(f: GitForge, head: str, method: str = "squash") -> MergeOutcome:
    return f.merge(
        task="greet",
        branch="factory/greet",
        head_sha=head,
        method=method,
        title="greet: say hello",
        body="Greets by name.",
        delete_branch=True,
    )


def test_a_patch_becomes_a_pushed_branch_and_pushing_twice_changes_nothing(
    tmp_path: Path, remote: Path
) -> None:
    f, _, head = pushed(
        tmp_path, remote, {"app.py": "def greet():\n    return 'hello'\n"}, "greet: say hello"
    )
    f.push_branch("factory/greet", head)
    assert f.branch_head("factory/greet") == head
    assert git(remote, "log", "--format=%s", "factory/greet") == "greet: say hello\nbase"


@pytest.mark.parametrize("method", ["squash", "merge", "rebase"])
def test_each_merge_method_lands_once_with_trailers(
    tmp_path: Path, remote: Path, method: str
) -> None:
    f, _, head = pushed(
        tmp_path, remote, {"app.py": "def greet():\n    return 'hello'\n"}, "greet: say hello"
    )
    first = land(f, head, method)
    second = land(f, head, method)
    assert first.outcome == "merged" and first.merged_sha
    assert second.merged_sha == first.merged_sha and second.message == "already merged"
    message = git(remote, "log", "-1", "--format=%B", "main")
    assert "Agentfactory-Task: greet" in message and f"Agentfactory-Head: {head}" in message
    assert git(remote, "show", "main:app.py") == "def greet():\n    return 'hello'"
    assert f.branch_head("factory/greet") is None, "deleteBranch"
    count = len(git(remote, "rev-list", "main").splitlines())
    assert count == (3 if method == "merge" else 2), "exactly one merge landed"


@pytest.mark.parametrize("racer", ["this clone", "another clone"])
def test_a_racing_push_to_the_branch_makes_the_merge_fail(
    tmp_path: Path, remote: Path, racer: str
) -> None:
    f, base, verified = pushed(tmp_path, remote, {"app.py": "x = 1\n"}, "verified")
    # Another clone's push is one this clone's view of the remote has not seen.
    other = f if racer == "this clone" else forge(tmp_path / "someone-else", remote)
    _, racing = diff_of(tmp_path, remote, "w2", {"app.py": "x = 2\n"})
    other.push_branch("factory/greet", other.commit_patch(base, racing, "race"))
    outcome = land(f, verified)
    assert outcome.outcome == "error" and "not the verified" in outcome.message
    assert len(git(remote, "rev-list", "main").splitlines()) == 1


def test_a_merge_retried_after_it_landed_is_found_when_the_branch_stays(
    tmp_path: Path, remote: Path
) -> None:
    f, _, head = pushed(tmp_path, remote, {"app.py": "x = 1\n"}, "verified")
    kept = {"task": "greet", "branch": "factory/greet", "head_sha": head, "method": "squash",
            "title": "t", "body": "", "delete_branch": False}  # fmt: skip
    first, again = f.merge(**kept), f.merge(**kept)  # type: ignore[arg-type]
    assert again.message == "already merged" and again.merged_sha == first.merged_sha
    assert len(git(remote, "rev-list", "main").splitlines()) == 2, "landed once"
    assert f.branch_head("factory/greet") == head


def test_a_moved_base_is_rebased_and_handed_back_for_ci(tmp_path: Path, remote: Path) -> None:
    f, _, head = pushed(tmp_path, remote, {"app.py": "def greet():\n    return 'hello'\n"}, "greet")
    push_to_main(tmp_path, remote, "other", {"notes.txt": "two\n"})
    moved = land(f, head)
    assert moved.outcome == "base-moved" and moved.new_head_sha
    assert f.branch_head("factory/greet") == moved.new_head_sha
    landed = land(f, moved.new_head_sha)
    assert landed.outcome == "merged"
    assert git(remote, "show", "main:notes.txt") == "two"
    assert git(remote, "show", "main:app.py") == "def greet():\n    return 'hello'"


def test_a_conflicting_base_is_reported_with_the_files(tmp_path: Path, remote: Path) -> None:
    f, _, head = pushed(tmp_path, remote, {"app.py": "def greet():\n    return 'hello'\n"}, "greet")
    push_to_main(tmp_path, remote, "other", {"app.py": "def greet():\n    return 'howdy'\n"})
    outcome = land(f, head)
    assert outcome.outcome == "conflict" and "app.py" in outcome.message
    assert f.branch_head("factory/greet") == head, "a failed rebase leaves the branch alone"


def land_as(f: GitForge, task: str, head: str, method: str = "squash") -> MergeOutcome:
    f.push_branch(f"factory/{task}", head)
    return f.merge(task=task, branch=f"factory/{task}", head_sha=head, method=method,
                   title=task, body="", delete_branch=True)  # fmt: skip


def queued_pair(tmp_path: Path, remote: Path, a: str, b: str) -> tuple[GitForge, str, str, str]:
    """The forge, the base, change *a* on it, and change *b* built on *a* (as the merge queue
    builds the one behind on the one ahead): (forge, base, head a, head b on a)."""
    f = forge(tmp_path, remote)
    base, diff_a = diff_of(tmp_path, remote, "wa", {"a.py": a})
    _, diff_b = diff_of(tmp_path, remote, "wb", {"b.py": b})
    head_a = f.commit_patch(base, diff_a, "a")
    built = f.rebase_onto(f.commit_patch(base, diff_b, "b"), upstream=base, onto=head_a)
    assert built.head_sha is not None and f.merge_base(built.head_sha, head_a) == head_a
    return f, base, head_a, built.head_sha


@pytest.mark.parametrize("method", ["squash", "merge"])
def test_a_head_built_on_the_one_ahead_merges_after_it_without_a_rebase(
    tmp_path: Path, remote: Path, method: str
) -> None:
    # The merge queue tests b on top of a; once a merged, the base holds exactly the tree b
    # was built on, so b lands as verified (the same tree), not rebased for CI again.
    f, _, head_a, head_b = queued_pair(tmp_path, remote, "a = 1\n", "b = 1\n")
    assert land_as(f, "a", head_a, method).outcome == "merged"
    landed = land_as(f, "b", head_b, method)
    assert landed.outcome == "merged", landed.message
    tree = git(remote, "rev-parse", "main^{tree}")
    assert tree == git(remote, "rev-parse", f"{head_b}^{{tree}}"), "the verified tree"


def test_a_head_built_on_a_change_that_left_the_queue_is_rebuilt_on_the_base_alone(
    tmp_path: Path, remote: Path
) -> None:
    f, base, head_a, head_b = queued_pair(tmp_path, remote, "a = 1\n", "b = 1\n")
    again = f.rebase_onto(head_b, upstream=head_a, onto=None)
    assert again.head_sha is not None and f.git("rev-parse", f"{again.head_sha}^") == base
    files = f.git("ls-tree", "--name-only", again.head_sha).split()
    assert files == ["app.py", "b.py", "notes.txt"], "only its own change, on the base"


def test_a_rebase_onto_a_conflicting_head_says_which_files(tmp_path: Path, remote: Path) -> None:
    f = forge(tmp_path, remote)
    base, diff_a = diff_of(tmp_path, remote, "wa", {"app.py": "x = 1\n"})
    _, diff_b = diff_of(tmp_path, remote, "wb", {"app.py": "x = 2\n"})
    head_a = f.commit_patch(base, diff_a, "a")
    head_b = f.commit_patch(base, diff_b, "b")
    built = f.rebase_onto(head_b, upstream=base, onto=head_a)
    assert built.head_sha is None and "app.py" in built.message


@pytest.mark.parametrize(
    ("prefix", "branch", "why"),
    [("factory/", "main", "is the base branch"), ("", "main", "is the base branch"),
     ("", "fix", "the branch prefix is empty"), ("factory/", "other/fix", "not under the prefix"),
     ("factory/", "main/fix", "is the base branch main or beside it"),
     ("factory/", "factory/../main", "not a plain branch name")],
)  # fmt: skip
def test_no_forge_writes_the_base_or_outside_its_prefix_whatever_it_is_configured_with(
    tmp_path: Path, remote: Path, prefix: str, branch: str, why: str
) -> None:
    # The schema refuses such a factory; this is the guard behind it, for a spec that was
    # never validated or a status edited to name another branch.
    f = GitForge(remote=str(remote), workdir=tmp_path / "forge", branch_prefix=prefix)
    base = f.base_sha()
    head = f.commit_patch(base, diff_of(tmp_path, remote, "w", {"notes.txt": "two\n"})[1], "x")
    for write in (lambda: f.push_branch(branch, head), lambda: f.delete_branch(branch),
                  lambda: f.merge(task="fix", branch=branch, head_sha=head, method="squash",
                                  title="t", body="", delete_branch=True)):  # fmt: skip
        with pytest.raises(BranchRefusedError, match=why):
            write()
    assert git(remote, "rev-parse", "main") == base
    assert git(remote, "for-each-ref", "--format=%(refname)", "refs/heads") == "refs/heads/main"
