"""GitHubForge through the real PyGithub and real git over HTTP, against the fake GitHub with
a bare repository behind it: the operator pushes with its own write token, pods get
read-only tokens, and every PR call can be repeated without a second effect."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from testbed.fakes.github_api import FakeGitHub, Fault
from testbed.gitutil import git

from agentfactory.core.gitauth import token_env
from agentfactory.core.github import ci_verdict, github_repository
from agentfactory.forge.git import BranchRefusedError
from agentfactory.forge.github import GitHubBusyError, GitHubError, GitHubForge, GitHubToken
from tests.githubs import ALL, PACING, REPO, app, forge, merge, move_base, open_pr

if TYPE_CHECKING:
    from pathlib import Path


def changed(fake: FakeGitHub, f: GitHubForge, branch: str = "factory/fix") -> str:
    """*branch* one commit ahead of the base, as a task's branch is (GitHub opens no pull
    request without a commit over its base)."""
    head = fake.commit(REPO, f.base_sha(), "fix.txt", "fixed\n", "fix: cart")
    fake.push(REPO, branch, head)
    return head


def pod_git(token: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", **token_env(token)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip


def test_the_operator_pushes_and_a_pod_token_only_reads(github: FakeGitHub, tmp_path: Path) -> None:
    f = forge(github, tmp_path / "op")
    base = f.base_sha()
    (f.clone / "NOTES.md").write_text("notes\n")
    git(f.clone, "add", "NOTES.md")
    git(f.clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notes")
    head = git(f.clone, "rev-parse", "HEAD")
    f.push_branch("factory/notes", head)
    assert github.head_of(REPO, "factory/notes") == head
    assert head != base
    token = f.credentials_for("implementer")["token"]
    assert github.grants[token].permissions["contents"] == "read"
    cloned = pod_git(token, "clone", "-q", github.clone_url(REPO), "work", cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    pushed = pod_git(token, "push", "origin", "HEAD:refs/heads/sneaky", cwd=tmp_path / "work")
    assert pushed.returncode != 0, "a read-only pod token cannot push"
    assert github.head_of(REPO, "sneaky") is None


def test_a_pull_request_and_its_comments_are_find_or_create(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    changed(github, f)
    first = f.ensure_pull_request("factory/fix", "fix: cart", "contract v1")
    again = f.ensure_pull_request("factory/fix", "fix: cart", "contract v2")
    assert again.number == first.number, "one PR per task"
    assert github.pulls[REPO][first.number]["body"] == "contract v2", "the body follows"
    assert first.url.endswith(f"/{REPO}/pull/{first.number}")
    f.comment(first.number, "plan", "the plan")
    f.comment(first.number, "plan", "the plan")
    f.comment(first.number, "plan", "the revised plan")
    f.comment(first.number, "review-1", "approved")
    bodies = [c["body"] for c in github.comments.values()]
    assert len(bodies) == 2, "one comment per key"
    assert bodies[0].endswith("the revised plan")
    assert len(github.pulls[REPO]) == 1


def test_a_pull_request_whose_creation_answer_was_lost_is_found_not_made_again(
    github: FakeGitHub, tmp_path: Path
) -> None:
    # GitHub makes the PR, then the answer is lost in a 502; PyGithub repeats the POST and
    # GitHub says the PR exists.
    lost = [Fault((502, {"message": "Server Error"}, {}), after=True)]
    creating = ("POST", f"/api/v3/repos/{REPO}/pulls")
    github.chaos.append(lambda method, path: lost.pop() if (method, path) == creating and lost
                        else None)  # fmt: skip
    f = forge(github, tmp_path / "op")
    changed(github, f)
    pr = f.ensure_pull_request("factory/fix", "fix: cart", "contract")
    assert list(github.pulls[REPO]) == [pr.number], "one PR"
    assert [m for m, p in github.calls if p.endswith("/pulls")].count("POST") == 2


def test_a_refusal_names_what_github_found_wrong(github: FakeGitHub, tmp_path: Path) -> None:
    f = forge(github, tmp_path / "op")
    with pytest.raises(GitHubError, match="422 Validation Failed: PullRequest head invalid"):
        f.ensure_pull_request("factory/never-pushed", "fix: cart", "contract")


def test_the_operator_token_is_minted_again_before_it_expires(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    assert f.operator_token() == f.operator_token(), "reused while it is fresh"
    assert len(github.grants) == 1
    github.token_lifetime = timedelta(minutes=4)  # inside the five-minute margin
    short = forge(github, tmp_path / "short")
    first = short.operator_token()
    assert short.operator_token() != first, "a token about to expire is replaced"


def test_the_ci_gate_reads_check_runs_and_statuses_on_the_exact_head(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head = f.base_sha()
    github.add_check_run(REPO, head, "test", conclusion="failure", summary="1 failed")
    github.add_check_run(REPO, head, "build", status="in_progress", conclusion=None)
    github.add_status(REPO, head, "lint", "success", "clean")
    github.add_check_run(REPO, "b" * 40, "docs", conclusion="failure")  # another commit
    checks = {c.name: c for c in f.checks(head)}
    assert set(checks) == {"test", "build", "lint"}, "only this head's reports"
    assert (checks["test"].state, checks["build"].state, checks["lint"].state) == (
        "failure",
        "pending",
        "success",
    )
    assert "1 failed" in checks["test"].summary
    red = ci_verdict(head, ["test", "lint"], list(checks.values()), waited=timedelta(0),
                     timeout=timedelta(hours=1))  # fmt: skip
    assert red is not None and red.state == "failure"
    assert [c.name for c in red.failed_checks] == ["test"]


def test_the_merge_is_pinned_to_the_verified_head_and_happens_once(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    racing = github.commit(REPO, head, "NOTES.md", "raced\n", "a racing push")
    github.push(REPO, "factory/notes", racing)
    refused = merge(f, head)
    assert refused.outcome == "error" and racing in refused.message, "not the verified head"
    github.push(REPO, "factory/notes", head)
    done = merge(f, head)
    assert done.outcome == "merged" and done.merged_sha == github.head_of(REPO, "main")
    assert github.head_of(REPO, "factory/notes") is None, "the branch is deleted"
    message = git(tmp_path / "github" / f"{REPO}.git", "log", "-1", "--format=%B", "main")
    assert f"Agentfactory-Head: {head}" in message
    again = merge(f, head)
    assert (again.outcome, again.merged_sha) == ("merged", done.merged_sha), "found, not redone"
    merges = [c for c in github.calls if c[1].endswith("/merge")]
    assert len(merges) == 1


def test_a_moved_base_is_merged_into_the_branch_and_goes_back_to_ci(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    move_base(github, "OTHER.md", "other\n")
    moved = merge(f, head)
    assert moved.outcome == "base-moved" and moved.new_head_sha not in (None, head)
    assert moved.new_head_sha == github.head_of(REPO, "factory/notes")
    assert github.head_of(REPO, "main") != moved.new_head_sha, "nothing merged yet"
    done = merge(f, moved.new_head_sha or "")
    assert done.outcome == "merged"


def test_a_head_the_queue_built_on_the_one_ahead_lands_as_verified_after_it(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    ahead, _ = open_pr(github, f)
    behind = github.commit(REPO, ahead, "OTHER.md", "behind\n", "behind: on top of notes")
    github.push(REPO, "factory/behind", behind)
    f.ensure_pull_request("factory/behind", "behind", "contract")
    assert merge(f, ahead).outcome == "merged"
    landed = merge(f, behind, task="behind", branch="factory/behind")
    assert landed.outcome == "merged", landed.message
    main = github.head_of(REPO, "main")
    assert git(tmp_path / "github" / f"{REPO}.git", "rev-parse", f"{main}^{{tree}}") == git(
        tmp_path / "github" / f"{REPO}.git", "rev-parse", f"{behind}^{{tree}}"
    ), "exactly the tree CI verified"
    assert not [c for c in github.calls if c[1].endswith("/update-branch")], "no update, no CI"


def behind_a_merge_queue(github: FakeGitHub, tmp_path: Path) -> tuple[GitHubForge, str, int]:
    """A ruleset on main requires GitHub's merge queue; the task's PR is open: (forge, head,
    PR number)."""
    github.require_merge_queue(REPO, "main")
    f = forge(github, tmp_path / "op")
    head, number = open_pr(github, f)
    return f, head, number


def test_where_githubs_merge_queue_is_required_the_pr_goes_through_it(
    github: FakeGitHub, tmp_path: Path
) -> None:
    # A ruleset requires the merge queue on main: GitHub refuses a merge through the REST API
    # and builds, checks and merges queued pull requests itself, so the forge defers to it.
    f, head, number = behind_a_merge_queue(github, tmp_path)
    move_base(github)  # GitHub's queue builds on the base as it is: no update of the branch
    queued = merge(f, head)
    assert queued.outcome == "queued", queued
    assert "GitHub's merge queue for main: position 1" in queued.message
    assert github.queued[REPO, "main"] == [number]
    again = merge(f, head)
    said = "in GitHub's merge queue for main: position 1, AWAITING_CHECKS"
    assert (again.outcome, again.message) == ("queued", said), "asked, not queued twice"
    assert github.queued[REPO, "main"] == [number]
    assert github.settle_merge_queue(REPO, "main") == [number]
    done = merge(f, head)
    assert done.outcome == "merged" and done.merged_sha == github.head_of(REPO, "main")
    called = {path.rsplit("/", 1)[-1] for method, path in github.calls}
    assert not called & {"merge", "update-branch"}, "neither refused call was made"
    assert [p for m, p in github.calls if p.endswith("/rules/branches/main")] == [
        f"/api/v3/repos/{REPO}/rules/branches/main"
    ], "the rules read once, then trusted a while"


def test_a_pr_githubs_merge_queue_removed_is_a_failed_merge_that_queues_again(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f, head, number = behind_a_merge_queue(github, tmp_path)
    assert merge(f, head).outcome == "queued"
    assert github.settle_merge_queue(REPO, "main", failing=frozenset({number})) == []
    removed = merge(f, head)
    assert removed.outcome == "error", removed
    assert f"removed PR #{number} without merging it" in removed.message
    assert merge(f, head).outcome == "queued", "the next attempt queues it again"
    # A head that moved under the queue's feet is refused by GitHub, not queued.
    raced = github.commit(REPO, head, "NOTES.md", "raced\n", "a racing push")
    github.settle_merge_queue(REPO, "main", failing=frozenset({number}))
    github.push(REPO, "factory/notes", raced)
    refused = merge(f, head)
    assert refused.outcome == "error" and raced in refused.message, refused


def test_a_conflict_is_reported_not_forced(github: FakeGitHub, tmp_path: Path) -> None:
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f, "ours\n")
    move_base(github, "NOTES.md", "theirs\n")
    outcome = merge(f, head)
    assert outcome.outcome == "conflict", outcome
    assert github.head_of(REPO, "factory/notes") == head, "the branch is left as it was"


def test_only_a_listed_login_approving_the_exact_head_counts(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head, number = open_pr(github, f)
    github.add_review(REPO, number, "mallory", "APPROVED", head)  # not an approver
    github.add_review(REPO, number, "Alice", "APPROVED", "c" * 40)  # an older head
    github.add_review(REPO, number, "bob", "APPROVED", head)
    github.add_review(REPO, number, "bob", "CHANGES_REQUESTED", head)  # bob changed his mind
    approvers = ["alice", "bob"]
    assert f.reviews(number, head, approvers).approved == []
    github.add_review(REPO, number, "Alice", "APPROVED", head)
    github.add_review(REPO, number, "Alice", "COMMENTED", head)  # a comment keeps it
    assert f.reviews(number, head, approvers).approved == ["alice"], "in the factory's spelling"


def test_the_phase_label_replaces_only_its_own(github: FakeGitHub, tmp_path: Path) -> None:
    f = forge(github, tmp_path / "op")
    _, number = open_pr(github, f)
    github.pulls[REPO][number]["labels"] = [{"name": "team:shop"}]
    f.label_phase(number, "CI")
    f.label_phase(number, "CodeReview")
    writes = len([c for c in github.calls if c[0] == "PUT" and c[1].endswith("/labels")])
    f.label_phase(number, "CodeReview")
    names = [label["name"] for label in github.pulls[REPO][number]["labels"]]
    assert names == ["team:shop", "agentfactory:CodeReview"]
    assert writes == len([c for c in github.calls if c[0] == "PUT" and c[1].endswith("/labels")]), (
        "an unchanged label is not rewritten"
    )


def test_a_plain_token_works_as_it_is_and_pods_get_the_same(
    github: FakeGitHub, tmp_path: Path
) -> None:
    token = github.personal_token(REPO, **ALL)
    f = GitHubForge.at(
        GitHubToken(github_repository(github.clone_url(REPO)), token, PACING), tmp_path
    )
    f.verify()
    changed(github, f)
    pr = f.ensure_pull_request("factory/fix", "fix: cart", "contract")
    assert github.pulls[REPO][pr.number]["head"] == "factory/fix"
    assert f.credentials_for("planner") == {"token": token}, "it cannot be narrowed"
    assert token not in repr(f)


def test_a_dead_or_blind_token_is_refused_with_the_fix(github: FakeGitHub, tmp_path: Path) -> None:
    target = github_repository(github.clone_url(REPO))
    with pytest.raises(GitHubError, match="401: the token is wrong, expired or revoked"):
        GitHubForge.at(GitHubToken(target, "ghp_nonsense", PACING), tmp_path).verify()
    other = github.personal_token("acme/other", contents="write")
    with pytest.raises(GitHubError, match="404: no such repository, or the token cannot see it"):
        GitHubForge.at(GitHubToken(target, other, PACING), tmp_path).verify()


def waited(fake: FakeGitHub, path_end: str) -> float:
    """Seconds between the first refused call to *path_end* and its retry."""
    times = [t for (_, path), t in zip(fake.calls, fake.call_times, strict=True)
             if path.endswith(path_end)]  # fmt: skip
    assert len(times) >= 2, "retried"
    return times[1] - times[0]


def test_a_spent_primary_rate_limit_is_waited_out_until_it_resets(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path)
    changed(github, f)
    github.rate_limit("primary", seconds=1)
    pr = f.ensure_pull_request("factory/fix", "fix: cart", "contract")
    assert github.pulls[REPO][pr.number]["head"] == "factory/fix"
    assert waited(github, "/pulls") >= 1, "not before the reset"


@pytest.mark.parametrize(("status", "retry_after"), [(403, True), (429, True), (403, False)])
def test_a_secondary_rate_limit_waits_as_github_asks(
    status: int, retry_after: bool, github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path)
    changed(github, f)
    number = f.ensure_pull_request("factory/fix", "fix: cart", "contract").number
    github.rate_limit("secondary", seconds=1, retry_after=retry_after, status=status)
    f.comment(number, "plan", "the plan")
    assert [c["body"] for c in github.comments.values()] == ["<!-- agentfactory:plan -->\nthe plan"]
    assert waited(github, f"/issues/{number}/comments") >= 1, "Retry-After or the pacing's wait"


def test_a_limit_that_resets_too_late_fails_the_call_and_says_until_when(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path)
    base = f.base_sha()
    github.rate_limit("primary", seconds=600)
    calls = len(github.calls)
    with pytest.raises(GitHubBusyError, match=r"rate limit is spent until .*tries again then"):
        f.checks(base)
    assert len(github.calls) == calls + 1, "no waiting for ten minutes"


def test_server_errors_on_forge_calls_are_retried_and_a_merge_attempt_is_not_spent(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path)
    changed(github, f)
    github.fail(502, times=2)
    pr = f.ensure_pull_request("factory/fix", "fix: cart", "contract")
    assert pr.number in github.pulls[REPO]
    github.fail(503, times=PACING.retries + 1)
    with pytest.raises(GitHubBusyError, match="merging factory/fix: 503"):
        f.merge(task="fix", branch="factory/fix", head_sha=pr.head_sha, method="squash",
                title="fix", body="", delete_branch=True)  # fmt: skip


def test_github_refuses_to_open_merge_or_delete_a_task_branch_that_is_the_base(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = GitHubForge.at(app(github), tmp_path / "op", "main", branch_prefix="")
    base = f.base_sha()
    with pytest.raises(BranchRefusedError, match="is the base branch"):
        f.ensure_pull_request("main", "fix", "")
    with pytest.raises(BranchRefusedError, match="is the base branch"):
        f.merge(task="main", branch="main", head_sha=base, method="squash", title="t", body="",
                delete_branch=True)  # fmt: skip
    with pytest.raises(BranchRefusedError, match="the branch prefix is empty"):
        f.push_branch("fix", base)
    assert github.head_of(REPO, "main") == base and github.head_of(REPO, "fix") is None
    assert not github.pulls.get(REPO), "no pull request from the base into itself"
