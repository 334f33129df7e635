"""The namespace worker against the real API server, without kopf: what keeps two writers (a standby
replica's last pass, a view behind the API) from doubling a transition."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from testbed.apiserver import SHIPPED
from testbed.fakes.github_api import FakeGitHub
from testbed.kube import Api, secret_doc, wait_for
from testbed.scripts import factory_doc, task_doc

from agentfactory.controller.worker import Worker
from agentfactory.forge.github import GitHubForge, PullRequest
from agentfactory.kube.auth import connect
from agentfactory.kube.client import Kube, KubeError, path_of
from agentfactory.kube.view import View
from agentfactory.manifests.agents import agent_service_account
from tests.githubs import ALL, REPO, app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from testbed.apiserver import ControlPlane

API = "agentfactory.dev/v1alpha1"


@asynccontextmanager
async def admin_in(plane: ControlPlane, ns: str, tmp_path: Path) -> AsyncIterator[Kube]:
    """An administrator's client, with the factory's agent ServiceAccount made (the factory
    handler's work, which does not run here: pods need it to be admitted)."""
    account = agent_service_account("shop", ns, "uid")
    account["metadata"].pop("ownerReferences")
    plane.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", account)
    config = plane.kubeconfig(tmp_path / "admin.kubeconfig", namespace=ns)
    async with Kube(connection=connect(str(config))) as kube:
        yield kube


async def test_a_worker_on_a_stale_view_loses_its_writes_instead_of_doubling_them(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    ns = control_plane.namespace("shop")
    async with admin_in(control_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "factoryspecs", ns), factory_doc(remote))
        task = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
        task["metadata"]["namespace"] = ns
        await kube.create(path_of(API, "agenttasks", ns), task)
        first = Worker(ns, kube, View(), tmp_path / "first")
        second = Worker(ns, kube, View(), tmp_path / "second")
        await first.refresh()
        await second.refresh()  # both saw the task Pending
        while await first.step():  # as far as it goes without a kubelet: the plan pod runs
            pass
        moved = await second.step()  # decides from Pending; the API says otherwise
        after = await kube.get(path_of(API, "agenttasks", ns, "fix-cart")) or {}
        assert [h["to"] for h in after["status"]["history"]] == ["Queued", "Planning"]
        assert after["status"]["phase"] == "Planning"
        assert not moved, "the stale observations were decided again and ignored"
        pods = await kube.list(path_of("v1", "pods", ns))
        assert [p["metadata"]["name"] for p in pods] == ["fix-cart-plan-1"]
        events = [e for e in await kube.list(path_of("v1", "events", ns))
                  if e["involvedObject"]["kind"] == "AgentTask"]  # not the scheduler's  # fmt: skip
        assert len(events) == 2, "one Event per transition, none for a refused write"


async def test_no_stage_pod_starts_before_its_factorys_network_policy(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # The factory handler (which does not run here) makes the policy; a worker finding it
    # missing (never made, or deleted) makes it before the pod: agents never run unconfined.
    ns = control_plane.namespace("shop")
    async with admin_in(control_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "factoryspecs", ns), factory_doc(remote))
        task = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
        await kube.create(path_of(API, "agenttasks", ns), task)
        worker = Worker(ns, kube, View(), tmp_path / "worker")
        await worker.refresh()
        while await worker.step():
            pass
        (pod,) = await kube.list(path_of("v1", "pods", ns))
        (policy,) = await kube.list(path_of("networking.k8s.io/v1", "networkpolicies", ns))
        made = datetime.fromisoformat(policy["metadata"]["creationTimestamp"])
        assert made <= datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
        assert policy["spec"]["podSelector"] == {
            "matchLabels": {"agentfactory.dev/factory": "shop"}
        }
        (internet,) = policy["spec"]["egress"][0]["to"]
        assert internet["ipBlock"]["cidr"] == "0.0.0.0/0"
        for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
            assert private in internet["ipBlock"]["except"], "the API server, services, metadata"
        assert policy["metadata"]["ownerReferences"][0]["name"] == "shop"


async def test_waiting_tasks_say_why_and_the_factory_counts_follow_its_tasks(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    ns = control_plane.namespace("shop")
    async with admin_in(control_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "factoryspecs", ns), factory_doc(remote))
        for doc in (
            task_doc("first", "One.", ["shop/cart.py"]),
            task_doc("second", "Two.", ["shop/pricing.py"], dependsOn=["first"]),
        ):
            await kube.create(path_of(API, "agenttasks", ns), doc)  # fmt: skip
        worker = Worker(ns, kube, View(), tmp_path / "worker")
        await worker.refresh()
        while await worker.step():
            pass
        second = await kube.get(path_of(API, "agenttasks", ns, "second")) or {}
        assert second["status"]["phase"] == "Pending"
        assert "first" in second["status"]["message"]
        assert not second["status"].get("history"), "a waiting message is not a transition"
        factory = await kube.get(path_of(API, "factoryspecs", ns, "shop")) or {}
        counts = factory["status"]["tasks"]
        assert (counts["total"], counts["active"]) == (2, 1)
        assert counts["byPhase"] == {"Planning": 1, "Pending": 1}
        assert factory["status"]["mergeQueue"] == []


async def test_a_stopped_worker_finishes_its_pass_and_returns(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    ns = control_plane.namespace("shop")
    async with admin_in(control_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "factoryspecs", ns), factory_doc(remote))
        task = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py"])
        await kube.create(path_of(API, "agenttasks", ns), task)
        worker = Worker(ns, kube, View(), tmp_path / "worker", resync_seconds=3600)
        running = asyncio.create_task(worker.run())
        api = Api(control_plane.url, control_plane.ssl_context())
        await wait_for(api, path_of(API, "agenttasks", ns), "fix-cart",
                       lambda o: (o.get("status") or {}).get("phase") == "Planning")  # fmt: skip
        worker.stop()
        await asyncio.wait_for(running, 10)  # returns by itself: no cancellation needed
        assert running.exception() is None


@dataclass
class GitHubShop:
    """The shop on the fake GitHub, its factory (App credentials) and task in the emulator,
    and the task's patch pushed to `factory/fix-cart`, as a pass of the operator left it."""

    github: FakeGitHub
    kube: Kube
    ns: str
    base: str
    head: str

    @property
    def path(self) -> str:
        return path_of(API, "agenttasks", self.ns, "fix-cart")

    async def worker_with_status(self, workdir: Path, **status: Any) -> Worker:
        """A worker that has read the task with *status* (the rest of the pipeline done)."""
        fields = {"attempt": 1, "branch": "factory/fix-cart", "headSHA": self.head, **status}
        await self.kube.patch(f"{self.path}/status", {"status": fields})
        worker = Worker(self.ns, self.kube, View(), workdir, github_poll_seconds=0)
        await worker.refresh()
        return worker

    async def awaiting_approval(self, tmp_path: Path) -> tuple[PullRequest, Worker]:
        """The task's PR, and a worker that read the task waiting in AwaitingApproval after
        its code review, for an escalation rule that matched its first patch."""
        pr = GitHubForge.at(app(self.github), tmp_path / "t").ensure_pull_request(
            "factory/fix-cart", "fix", "contract"
        )
        worker = await self.worker_with_status(
            tmp_path / "worker", phase="AwaitingApproval", stage="codeReview", patchRevision=1,
            pullRequest={"number": pr.number, "url": pr.url},
            escalation={"revision": 1, "rules": ["migrations"], "reason": "a migration"},
        )  # fmt: skip
        return pr, worker

    async def task_status(self) -> dict[str, Any]:
        return dict((await self.kube.get(self.path) or {})["status"])


@asynccontextmanager
async def github_shop(
    plane: ControlPlane, tmp_path: Path, remote: Path, **spec: Any
) -> AsyncIterator[GitHubShop]:
    ns = plane.namespace("shop")
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        github.install(7, REPO, **ALL)
        async with admin_in(plane, ns, tmp_path) as kube:
            await kube.create(
                path_of("v1", "secrets", ns), secret_doc("gh-app", github.app_secret(7), "shop")
            )
            doc = factory_doc(remote, ci={"source": "github-checks", "requiredChecks": ["test"]},
                              repository={"url": github.clone_url(REPO), "forge": "github",
                                          "allowHTTP": True,
                                          "credentials": {"githubApp": {"secretName": "gh-app"}}},
                              **spec)  # fmt: skip
            await kube.create(path_of(API, "factoryspecs", ns), doc)
            task = task_doc("fix-cart", "cart_total counts.", ["shop/cart.py"])
            await kube.create(path_of(API, "agenttasks", ns), task)
            base = github.head_of(REPO, "main") or ""
            head = github.commit(REPO, base, "shop/cart.py", "fixed\n", "the patch")
            github.push(REPO, "factory/fix-cart", head)
            yield GitHubShop(github, kube, ns, base, head)


async def test_an_approving_review_by_a_listed_login_approves_the_waiting_task(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with github_shop(
        control_plane, tmp_path, remote, escalation={"approvers": ["alice"]}
    ) as shop:
        github, head = shop.github, shop.head
        pr, worker = await shop.awaiting_approval(tmp_path)
        github.add_review(REPO, pr.number, "mallory", "APPROVED", head)
        await worker.step()
        assert (await shop.task_status())["phase"] == "AwaitingApproval"
        github.add_review(REPO, pr.number, "Alice", "APPROVED", head)
        await worker.step()
        task = await shop.task_status()
        assert task["phase"] == "Merging"
        assert task["escalation"]["approvedBy"] == "alice"


async def test_a_listed_reviewers_request_for_changes_sends_the_patch_back_with_their_words(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with github_shop(
        control_plane, tmp_path, remote, escalation={"approvers": ["alice"]}
    ) as shop:
        github, head = shop.github, shop.head
        pr, worker = await shop.awaiting_approval(tmp_path)
        github.add_review(REPO, pr.number, "mallory", "CHANGES_REQUESTED", head, "rewrite it")
        github.add_review(REPO, pr.number, "alice", "CHANGES_REQUESTED", "0" * 40, "old head")
        await worker.step()
        assert (await shop.task_status())["phase"] == "AwaitingApproval", "neither counts"
        note = ("shop/cart.py", 2, "round here, not in the caller")
        github.add_review(REPO, pr.number, "alice", "CHANGES_REQUESTED", head,
                          "Totals must stay in cents.", comments=(note,))  # fmt: skip
        await worker.step()
        task = await shop.task_status()
        assert (task["phase"], task["reason"]) == ("Implementing", "HumanChangesRequested")
        assert "Totals must stay in cents." in task["feedback"]
        assert "- shop/cart.py:2: round here, not in the caller" in task["feedback"]
        assert task["attempts"]["implement"] == 1


async def test_a_parked_task_gets_its_pr_and_a_listed_reviewer_approves_it(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    escalation = {"approvers": ["alice"], "notify": {"mentionOnPR": ["alice"]}}
    async with github_shop(control_plane, tmp_path, remote, escalation=escalation) as shop:
        github, head = shop.github, shop.head
        parked = {
            "revision": 1,
            "rules": ["secrets"],
            "reason": "secrets on k.pem",
            "matches": [{"rule": "secrets", "action": "Park", "file": "k.pem"}],
        }
        worker = await shop.worker_with_status(
            tmp_path / "worker", phase="NeedsAttention", reason="EscalationParked", stage="ci",
            attempt=0, patchRevision=1, escalation=parked,
        )  # fmt: skip
        await worker.step()
        task = await shop.task_status()
        number = task["pullRequest"]["number"]
        assert github.pulls[REPO][number]["head"] == "factory/fix-cart"
        comments = [c["body"] for c in github.comments.values()]
        assert any("@alice escalation rules secrets need a person" in c for c in comments)
        await worker.step()
        assert (await shop.task_status())["phase"] == "NeedsAttention", "nobody approved yet"
        github.add_review(REPO, number, "alice", "APPROVED", head)
        await worker.step()
        task = await shop.task_status()
        assert (task["phase"], task["escalation"]["approvedBy"]) == ("Queued", "alice")
        assert len(github.pulls[REPO]) == 1


async def test_reviews_are_read_at_most_once_per_poll_period(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with github_shop(
        control_plane, tmp_path, remote, escalation={"approvers": ["alice"]}
    ) as shop:
        worker = await shop.worker_with_status(
            tmp_path / "worker", phase="AwaitingApproval", stage="codeReview", patchRevision=1,
            escalation={"revision": 1, "rules": ["migrations"], "reason": "a migration"},
        )  # fmt: skip
        worker.loop.sync.poll_seconds = 3600
        await worker.step()  # opens the PR
        await worker.step()  # reads the reviews
        number = (await shop.task_status())["pullRequest"]["number"]
        shop.github.add_review(REPO, number, "alice", "APPROVED", shop.head)
        await worker.step()
        assert (await shop.task_status())["phase"] == "AwaitingApproval", "not asked again yet"
        reads = [c for c in shop.github.calls if c[1].endswith(f"/pulls/{number}/reviews")]
        assert len(reads) == 1


async def test_a_github_factory_opens_the_pr_and_gates_ci_on_the_exact_head(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    async with github_shop(control_plane, tmp_path, remote) as shop:
        github, base, head = shop.github, shop.base, shop.head
        since = datetime.now(UTC).isoformat()  # a fixed date would time the CI gate out one day
        worker = await shop.worker_with_status(
            tmp_path / "worker", phase="CI", stage="ci", lastTransitionTime=since
        )
        await worker.step()  # opens the PR, records it
        number = (await shop.task_status())["pullRequest"]["number"]
        assert github.pulls[REPO][number]["head"] == "factory/fix-cart"
        assert "cart_total counts." in github.pulls[REPO][number]["body"]
        await worker.step()
        assert (await shop.task_status())["phase"] == "CI", "no checks yet"
        github.add_check_run(REPO, base, "test", conclusion="success")  # another commit
        github.add_check_run(REPO, head, "test", conclusion="failure", summary="1 failed")
        await worker.step()
        red = await shop.task_status()
        assert red["phase"] == "Implementing"
        assert "1 failed" in json.dumps(red)
        assert len(github.pulls[REPO]) == 1, "one PR per task"
        labels = [label["name"] for label in github.pulls[REPO][number]["labels"]]
        assert labels == ["agentfactory:Implementing"], "the PR shows the phase"
        comments = [c["body"] for c in github.comments.values()]
        assert len(comments) == 1 and f"CI failure on {head[:12]}" in comments[0]
        assert "`test`: test\n1 failed" in comments[0], "the check run's output"


async def test_a_task_whose_status_does_not_validate_is_left_alone_and_reported(
    bare_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    # Our CRD refuses such a status (the test below); it reaches the operator only where the
    # CRD was installed without our status schema: a control plane of this test's own.
    for crd in SHIPPED:
        crd = json.loads(json.dumps(crd))
        version = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        version["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        bare_plane.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                           crd)  # fmt: skip
        bare_plane.await_established(crd["metadata"]["name"])
    ns = bare_plane.namespace("shop")
    async with admin_in(bare_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "factoryspecs", ns), factory_doc(remote))
        await kube.create(path_of(API, "agenttasks", ns),
                          task_doc("fix-cart", "cart_total counts.", ["shop/cart.py"]))  # fmt: skip
        path = path_of(API, "agenttasks", ns, "fix-cart")
        await kube.patch(f"{path}/status", {"status": HAND_EDITED})
        worker = Worker(ns, kube, View(), tmp_path / "worker")
        await worker.refresh()
        assert not await worker.step()
        assert not await worker.step()
        task = await kube.get(path) or {}
        assert task["status"] == HAND_EDITED, "not rebuilt from the start"
        events = [e for e in await kube.list(path_of("v1", "events", ns))
                  if e["reason"] == "StatusUnreadable"]  # fmt: skip
        assert len(events) == 1, "reported once per version"
        assert "status.stage" in events[0]["message"]
        assert await kube.list(path_of("v1", "pods", ns)) == []


HAND_EDITED = {"phase": "CodeReview", "stage": "code-review", "attempt": 1}


async def test_the_api_server_refuses_a_status_that_does_not_validate(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    ns = control_plane.namespace("shop")
    async with admin_in(control_plane, ns, tmp_path) as kube:
        await kube.create(path_of(API, "agenttasks", ns),
                          task_doc("fix-cart", "cart_total counts.", ["shop/cart.py"]))  # fmt: skip
        path = path_of(API, "agenttasks", ns, "fix-cart")
        with pytest.raises(KubeError) as refused:
            await kube.patch(f"{path}/status", {"status": HAND_EDITED})
        assert refused.value.status == 422
        assert 'status.stage: Unsupported value: "code-review"' in str(refused.value)


ISSUE = """### Goal
Discount codes apply once per order.
### Acceptance criteria
- A second code on the same order is refused
### Scope
- shop/pricing.py
"""


async def test_labelled_issues_become_tasks_once_and_a_vague_one_is_told_why(
    control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    intake = {"githubIssues": {"label": "agentfactory"}}
    async with github_shop(control_plane, tmp_path, remote, intake=intake) as shop:
        github = shop.github
        good = github.open_issue(REPO, "Discounts stack", ISSUE, ["agentfactory", "bug"])
        vague = github.open_issue(REPO, "Make it faster", "Please.", ["agentfactory"])
        github.open_issue(REPO, "Not for the factory", ISSUE, ["bug"])
        worker = Worker(shop.ns, shop.kube, View(), tmp_path / "worker", github_poll_seconds=0)
        await worker.refresh()
        await worker.step()
        await worker.step()  # reads the issues again: nothing twice
        tasks = path_of(API, "agenttasks", shop.ns)
        names = sorted(t["metadata"]["name"] for t in await shop.kube.list(tasks))
        assert names == ["fix-cart", f"shop-issue-{good}"]
        task = await shop.kube.get(f"{tasks}/shop-issue-{good}") or {}
        assert task["spec"]["acceptanceCriteria"] == ["A second code on the same order is refused"]
        assert task["spec"]["source"]["githubIssue"]["number"] == good
        labels = {label["name"] for label in github.issues[REPO][good]["labels"]}
        assert labels == {"agentfactory", "bug", "agentfactory:task"}
        said = {c["issue"][1]: c["body"] for c in github.comments.values()}
        assert len(github.comments) == 2, "one comment each, not one per poll"
        assert f"AgentTask `shop-issue-{good}`" in said[good]
        assert "spec.acceptanceCriteria" in said[vague] and "### Scope" in said[vague]
        await shop.kube.delete(f"{tasks}/shop-issue-{good}")
        github.issues[REPO][vague]["body"] = ISSUE.replace("pricing", "search")
        await worker.step()
        names = sorted(t["metadata"]["name"] for t in await shop.kube.list(tasks))
        assert names == ["fix-cart", f"shop-issue-{vague}"], "taken once, even when deleted"
        events = await shop.kube.list(path_of("v1", "events", shop.ns))
        intake = [e["involvedObject"] for e in events if e["reason"] == "TaskFromIssue"]
        assert [(o["kind"], o["name"]) for o in intake] == [("FactorySpec", "shop")] * 2, intake
