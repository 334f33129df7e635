"""The operator on a GitHub that behaves as GitHub does: an update of the branch that GitHub
finishes after answering, a secondary rate limit on the merge, branch protection, and a
combined status longer than one page. Each task ends: merged, or waiting with its reason."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from testbed.cluster import FIX_CART, cluster, fixes
from testbed.fakes.github_api import FakeGitHub, Fault, Protection
from testbed.gitutil import git
from testbed.kube import wait_for

from tests.githubs import REPO, move_base

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


def spec(github: FakeGitHub, required: list[str]) -> dict[str, Any]:
    return {
        "repository": {"url": github.clone_url(REPO), "forge": "github", "allowHTTP": True,
                       "credentials": {"githubApp": {"secretName": "gh-app"}}},
        "ci": {"source": "github-checks", "requiredChecks": required},
    }  # fmt: skip


def limit_the_next_merge(github: FakeGitHub) -> None:
    """GitHub answers the next merge with a secondary limit: 429, try again in a second."""
    left = [1]
    said = {"message": "You have exceeded a secondary rate limit."}

    def rule(method: str, path: str) -> Fault | None:
        if method != "PUT" or not path.endswith("/merge") or not left[0]:
            return None
        left[0] -= 1
        return Fault((429, said, {"Retry-After": "1"}))

    github.chaos.append(rule)


async def test_a_base_github_merges_in_later_and_a_rate_limited_merge_end_in_one_merge(
    control_plane: ControlPlane, github: FakeGitHub, tmp_path: Path, remote: Path
) -> None:
    github.update_delay = 1.0  # the 202 comes first; the branch moves a second later
    bare = tmp_path / "github" / f"{REPO}.git"
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(),
                       secrets={"gh-app": github.app_secret(7)},
                       **spec(github, ["test"])) as c:  # fmt: skip
        waiting = await c.phase("fix-cart", "CI", "NeedsAttention", "Merged")
        assert waiting["status"]["phase"] == "CI", waiting["status"].get("message")
        first = waiting["status"]["headSHA"]
        base = move_base(github)
        github.add_check_run(REPO, first, "test", conclusion="success")

        def moved_on(task: dict[str, Any]) -> bool:
            status = task.get("status") or {}
            return status.get("headSHA") not in (None, first) or status.get("phase") in (
                "NeedsAttention", "Merged")  # fmt: skip

        moved = await wait_for(c.api, c.tasks, "fix-cart", moved_on)
        assert moved["status"]["phase"] == "CI", moved["status"].get("message")
        second = moved["status"]["headSHA"]
        parents = git(bare, "rev-list", "--parents", "-n1", second).split()[1:]
        assert parents == [first, base], "GitHub's merge of the base, not the old head"
        limit_the_next_merge(github)
        github.add_check_run(REPO, second, "test", conclusion="success")
        task = await c.phase("fix-cart", "Merged", "NeedsAttention")
    status = task["status"]
    assert status["phase"] == "Merged", status.get("message")
    [pull] = github.pulls[REPO].values()
    assert pull["merged_head"] == second
    assert [m for m, p in github.calls if p.endswith("/update-branch")] == ["PUT"]
    assert [m for m, p in github.calls if p.endswith("/merge")] == ["PUT", "PUT"]
    # One merge attempt found the base moved (not counted), the next merged: the 429
    # was waited out inside it.
    assert status["attempts"]["merge"] == 2, status["attempts"]
    assert status["roundBaseline"]["merge"] == 1


async def test_protection_and_a_long_status_list_end_waiting_with_the_review_named(
    control_plane: ControlPlane, github: FakeGitHub, tmp_path: Path, remote: Path
) -> None:
    github.protect(REPO, "main", Protection(required_checks=("lint-34",),
                                            required_approvals=1))  # fmt: skip
    async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(),
                       secrets={"gh-app": github.app_secret(7)},
                       **spec(github, ["lint-34"])) as c:  # fmt: skip
        waiting = await c.phase("fix-cart", "CI", "NeedsAttention", "Merged")
        assert waiting["status"]["phase"] == "CI", waiting["status"].get("message")
        head = waiting["status"]["headSHA"]
        for i in range(35):  # the required one is on the second page of 30
            github.add_status(REPO, head, f"lint-{i:02}", "success")
        task = await c.phase("fix-cart", "Merged", "NeedsAttention")
    status = task["status"]
    assert status["phase"] == "NeedsAttention", status.get("message")
    assert "At least 1 approving review is required" in status["message"]
    assert "approve the pull request on GitHub" in status["message"]
    assert "conflict" not in status["message"]
    assert status["attempts"]["implement"] == 1, "no implementer was sent to fix a conflict"
    [pull] = github.pulls[REPO].values()
    assert not pull["merged"]
