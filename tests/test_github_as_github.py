"""GitHub's behaviours that a kind fake hides, each met by the adapter: an update-branch that
GitHub finishes later, branch protection refusals, paged lists and rate limits answered with
429. The fake behaves as GitHub does here, and every exchange is held to GitHub's published
description when the fake closes."""

from __future__ import annotations

import re
import urllib.request
from typing import TYPE_CHECKING

import pytest
from testbed.fakes.github_api import FakeGitHub, Fault, Protection
from testbed.github_openapi import description
from testbed.gitutil import git

from agentfactory.forge.github import GitHubBusyError, GitHubError, Pacing
from tests.githubs import ALL, PACING, REPO, forge, merge, move_base, open_pr

if TYPE_CHECKING:
    from pathlib import Path


def parents(github: FakeGitHub, tmp_path: Path, sha: str) -> list[str]:
    bare = tmp_path / "github" / f"{REPO}.git"
    return git(bare, "rev-list", "--parents", "-n1", sha).split()[1:]


def test_an_update_github_finishes_later_is_waited_for_and_its_merge_is_the_new_head(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.update_delay = 0.5  # the 202 comes first; the branch moves half a second later
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    base = move_base(github)
    moved = merge(f, head)
    assert moved.outcome == "base-moved"
    assert moved.new_head_sha not in (None, head), "not the old head read too soon"
    assert parents(github, tmp_path, moved.new_head_sha or "") == [head, base]


def test_an_update_not_finished_in_time_costs_nothing_and_the_next_pass_takes_its_result(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.update_delay = 3600  # until the test finishes it
    f = forge(github, tmp_path / "op", Pacing(seconds_between_requests=0, update_wait=1))
    head, _ = open_pr(github, f)
    base = move_base(github)
    with pytest.raises(GitHubBusyError, match="has not moved it"):
        merge(f, head)
    github.finish_updates()
    moved = merge(f, head)  # the next pass, with the head it verified
    assert moved.outcome == "base-moved", moved.message
    assert parents(github, tmp_path, moved.new_head_sha or "") == [head, base]
    updates = [c for c in github.calls if c[1].endswith("/update-branch")]
    assert len(updates) == 1, "GitHub's update is taken, not asked for again"


@pytest.mark.parametrize(
    ("rule", "methods", "said"),
    [
        (Protection(required_checks=("ci/build",)), None,
         r'Required status check "ci/build" is expected.*list that check in ci.requiredChecks'),
        (Protection(required_approvals=1), None,
         r"At least 1 approving review is required.*approve the pull request on GitHub"),
        (None, {"merge"}, r"Squash merges are not allowed.*set merge.method"),
    ],
)  # fmt: skip
def test_a_branch_protection_refusal_is_named_with_its_fix_not_read_as_a_conflict(
    rule: Protection | None, methods: set[str] | None, said: str, github: FakeGitHub,
    tmp_path: Path,
) -> None:  # fmt: skip
    if rule is not None:
        github.protect(REPO, "main", rule)
    if methods is not None:
        github.merge_methods[REPO] = methods
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    refused = merge(f, head)
    assert refused.outcome == "blocked", refused
    assert re.search(said, refused.message), refused.message
    assert github.head_of(REPO, "factory/notes") == head, "nothing merged, nothing deleted"


def test_a_merge_github_says_is_not_mergeable_yet_is_read_again(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    first, _ = open_pr(github, f)
    head = github.commit(REPO, first, "NOTES.md", "more notes\n", "more")
    github.push(REPO, "factory/notes", head)
    done = merge(f, head)  # GitHub answers `mergeable: null` at the first read after a push
    assert done.outcome == "merged", done
    reads = [c for c in github.calls if re.search(r"/pulls/\d+$", c[1])]
    assert len(reads) >= 2, "the null was read again"


def test_every_page_of_the_combined_status_is_read(github: FakeGitHub, tmp_path: Path) -> None:
    f = forge(github, tmp_path / "op")
    head = f.base_sha()
    for i in range(35):  # GitHub lists 30 per page
        github.add_status(REPO, head, f"check-{i:02}", "failure" if i == 33 else "success")
    checks = {c.name: c.state for c in f.checks(head)}
    assert len(checks) == 35
    assert checks["check-33"] == "failure", "the failing status on page 2 is seen"
    assert len([c for c in github.calls if c[1].endswith("/status")]) == 2


def refuse_merges(github: FakeGitHub, times: int, headers: dict[str, str]) -> None:
    """Answer the next *times* merge calls with GitHub's 429."""
    said = {"message": "You have exceeded a secondary rate limit."}
    left = [times]

    def rule(method: str, path: str) -> Fault | None:
        if method != "PUT" or not path.endswith("/merge") or left[0] == 0:
            return None
        left[0] -= 1
        return Fault((429, said, headers))

    github.chaos.append(rule)


def test_a_429_without_retry_after_is_waited_out_as_a_secondary_limit(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    refuse_merges(github, 1, {})
    done = merge(f, head)
    assert done.outcome == "merged", done
    times = [t for (m, p), t in zip(github.calls, github.call_times, strict=True)
             if m == "PUT" and p.endswith("/merge")]  # fmt: skip
    assert len(times) == 2 and times[1] - times[0] >= PACING.secondary_rate_wait


def test_a_lasting_429_costs_no_merge_attempt_and_a_long_retry_after_is_not_waited(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    head, _ = open_pr(github, f)
    refuse_merges(github, 1, {"Retry-After": "600"})  # past max_rate_limit_wait
    with pytest.raises(GitHubBusyError, match=r"429|rate limit"):
        merge(f, head)
    assert len([c for c in github.calls if c[1].endswith("/merge")]) == 1, "no ten-minute wait"
    assert merge(f, head).outcome == "merged", "the next pass merges"


def test_a_pull_request_without_a_commit_over_the_base_is_refused_as_github_does(
    github: FakeGitHub, tmp_path: Path
) -> None:
    f = forge(github, tmp_path / "op")
    github.push(REPO, "factory/empty", f.base_sha())
    with pytest.raises(GitHubError, match=r"422 .*No commits between main and factory/empty"):
        f.ensure_pull_request("factory/empty", "empty", "")


def test_an_exchange_github_does_not_document_is_a_divergence_that_fails_the_test(
    github: FakeGitHub,
) -> None:
    token = github.personal_token(REPO, **ALL)
    request = urllib.request.Request(f"{github.url}/api/v3/repos/{REPO}/pulls?sort_by=age",
                                     headers={"Authorization": f"token {token}"})  # fmt: skip
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200
    assert github.divergences() == [
        f"GET /repos/{REPO}/pulls -> 200: query parameter sort_by is not one the operation takes"
    ]
    op = description().operation("GET", f"/repos/{REPO}/pulls/1")
    assert op is not None
    wrong = description().response(op, 200, {**description().least("pull-request"), "number": "1"})
    assert wrong == ["response: number: '1' is not of type 'integer'"]
    assert description().response(op, 418, {}) == [
        "418 is not an answer GET /repos/{owner}/{repo}/pulls/{pull_number} documents"
        " (200, 304, 404, 406, 500, 503)"
    ]
    github.exchanges.clear()  # what the fake would fail this test for on closing
