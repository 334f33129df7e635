"""The operator end to end on a GitHub repository: kopf against the real API server, stage
pods in the test kubelet cloning from the fake GitHub with the read-only tokens minted for
them, the operator pushing, opening the PR, waiting for the required check on the exact head, and
merging through the API. The fake's request log counts what one task costs on GitHub."""

from __future__ import annotations

import collections
import json
import re
import time
from typing import TYPE_CHECKING, Any

from testbed.cluster import FIX_CART, cluster, fixes
from testbed.fakes.github_api import FakeGitHub
from testbed.gitutil import git
from testbed.kube import wait_for

from tests.githubs import ALL, REPO

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

#: The stage pods of one pass on GitHub: CI is GitHub's own, so no CI pod.
AGENT_STAGES = ["fix-cart-plan-1", "fix-cart-plan-review-1", "fix-cart-implement-1",
                "fix-cart-code-review-1"]  # fmt: skip


NUMBER = re.compile(r"/([0-9a-f]{40}|\d+)(?=/|$)")


def api_calls(github: FakeGitHub) -> collections.Counter[str]:
    """The fake's REST calls (not git's smart HTTP) by verb and route shape."""
    return collections.Counter(
        f"{method} {NUMBER.sub('/N', path.removeprefix('/api/v3'))}"
        for method, path in github.calls
        if path.startswith("/api/v3/")
    )


def on_github(github: FakeGitHub) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """A factory's spec on the fake's repository, its CI GitHub's own check `test`, and the
    App's Secret it names (installation 7)."""
    spec = {
        "repository": {"url": github.clone_url(REPO), "forge": "github", "allowHTTP": True,
                       "credentials": {"githubApp": {"secretName": "gh-app"}}},
        "ci": {"source": "github-checks", "requiredChecks": ["test"]},
    }  # fmt: skip
    return spec, {"gh-app": github.app_secret(7)}


async def test_a_github_task_goes_through_one_pr_gated_on_its_check_and_merges(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    with FakeGitHub(root=tmp_path / "github") as github:
        bare = github.create_repository(REPO, remote)
        github.install(7, REPO, **ALL)
        spec, secrets = on_github(github)
        async with cluster(
            control_plane,
            tmp_path,
            remote,
            [FIX_CART],
            fixes(),
            secrets=secrets,
            **spec,
        ) as c:
            waiting = await c.phase("fix-cart", "CI", "NeedsAttention", "Merged")
            in_ci = time.monotonic()
            assert waiting["status"]["phase"] == "CI", waiting["status"].get("message")
            head = waiting["status"]["headSHA"]
            github.add_check_run(REPO, head, "test", conclusion="success")  # GitHub's CI
            task = await c.phase("fix-cart", "Merged", "NeedsAttention")
            open_for = time.monotonic() - in_ci  # from CI to the merge: reviews are read
            assert task["status"]["phase"] == "Merged", task["status"].get("message")
            assert c.started == AGENT_STAGES
            assert c.refused() == [], "the chart's RBAC allows all it does"
            [factory] = await c.items(f"{c.api_path}/factoryspecs")
            assert factory["status"]["mergedBy"] == "agentfactory", "no ruleset asks otherwise"
        [pull] = github.pulls[REPO].values()
        assert pull["head"] == "factory/fix-cart" and pull["merged"]
        assert pull["merged_head"] == head, "merged at the head CI verified"
        assert task["status"]["pullRequest"]["url"].endswith(f"/pull/{pull['number']}")
        assert [label["name"] for label in pull["labels"]] == ["agentfactory:Merged"]
        comments = [c["body"] for c in github.comments.values()]
        assert any("**Plan**" in body for body in comments), comments
        assert any("**code review #1: APPROVE**" in body for body in comments), comments
        assert "fix-cart" in git(bare, "log", "-1", "--format=%B", "main")
        assert github.head_of(REPO, "factory/fix-cart") is None, "the branch is deleted"
        # One token per pod, for this repository only, read-only; the operator's writes.
        pods = [g for g in github.grants.values() if g.permissions.get("contents") == "read"]
        assert len(pods) == len(AGENT_STAGES)
        assert all(g.repositories == [REPO] for g in github.grants.values())
        operator = [g for g in github.grants.values() if g.permissions.get("contents") == "write"]
        # One when the factory's credentials are tried, one the worker reuses while fresh.
        assert len(operator) == 2
        assert github.key not in json.dumps(task)
        calls = api_calls(github)
        # Measured at 34: 6 token mints, PR find + create, 5 PR updates (phase label and
        # comments: about 3 calls each), the check runs and statuses of the head once, the
        # base branch's rules (is GitHub's merge queue required? once by the factory's
        # handler, once by the worker's forge), and the merge (PRs, compare, mergeable,
        # merge, branch delete). Besides, the reviews are
        # read at most once per poll (1 s here) from CI to the merge: a person's request for
        # changes is a back edge.
        reviews = calls.pop("GET /repos/acme/shop/pulls/N/reviews", 0)
        assert reviews <= 2 + open_for, (reviews, open_for)
        assert sum(calls.values()) <= 38, sorted(calls.items())
        assert calls["GET /repos/acme/shop/rules/branches/main"] == 2
        assert calls["POST /repos/acme/shop/pulls"] == 1
        assert calls["PUT /repos/acme/shop/pulls/N/merge"] == 1
        assert calls["POST /app/installations/N/access_tokens"] == len(AGENT_STAGES) + 2


async def test_where_github_requires_its_merge_queue_the_task_merges_through_it(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # A ruleset on main requires GitHub's merge queue: GitHub refuses merges through the API,
    # so the operator queues the PR there, says so on the task, and waits for GitHub.
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        github.install(7, REPO, **ALL)
        github.require_merge_queue(REPO, "main")
        spec, secrets = on_github(github)
        async with cluster(control_plane, tmp_path, remote, [FIX_CART], fixes(),
                           secrets=secrets, **spec) as c:  # fmt: skip
            waiting = await c.phase("fix-cart", "CI", "NeedsAttention", "Merged")
            head = waiting["status"]["headSHA"]
            github.add_check_run(REPO, head, "test", conclusion="success")
            queued = await wait_for(c.api, c.tasks, "fix-cart", lambda t: "merge queue" in (
                (t.get("status") or {}).get("message") or ""))  # fmt: skip
            status = queued["status"]
            assert status["phase"] == "Merging", status
            assert status["message"].startswith("in GitHub's merge queue for main: position 1")
            assert status["queue"]["onForge"] == status["message"]
            [pull] = github.pulls[REPO].values()
            assert github.queued[REPO, "main"] == [pull["number"]]
            assert github.settle_merge_queue(REPO, "main") == [pull["number"]]
            task = await c.phase("fix-cart", "Merged", "NeedsAttention")
            assert task["status"]["phase"] == "Merged", task["status"].get("message")
            assert c.refused() == []
            [factory] = await c.items(f"{c.api_path}/factoryspecs")
            assert factory["status"]["mergedBy"] == "github-merge-queue", "it says which runs"
        assert pull["merged"] and pull["merged_head"] == head, "merged at the verified head"
        assert task["status"]["mergedSHA"] == github.head_of(REPO, "main")
        assert api_calls(github)["PUT /repos/acme/shop/pulls/N/merge"] == 0, "GitHub merged it"
