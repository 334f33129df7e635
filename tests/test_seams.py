"""The seams hold: a forge and an executor that exist only in this test, registered here and
handed to the shared reconcile loop, carry a task from Pending to Merged with no edit
anywhere else. The forge double has pull requests and checks (so the loop must find them by
capability, not by kind); the executor double answers each stage with its scripted result."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from testbed.instant import result
from testbed.memory import MemoryStore, Said

from agentfactory.core.executors import Absent, Outcome
from agentfactory.core.factory import FactorySpecSpec, Repository
from agentfactory.core.forges import MergeOutcome, PullRequest, Rebased
from agentfactory.core.github import ForgeCheck
from agentfactory.core.phases import Phase
from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus, Scope
from agentfactory.forge.registry import ForgeRegistry
from agentfactory.loop.ports import Record
from agentfactory.loop.reconciler import Reconciler

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from agentfactory.core.executors import Attempt, Launch, Observed
    from agentfactory.core.forges import Forge

BASE = "b" * 40
SPEC = AgentTaskSpec.model_validate({
    "factoryRef": "paper", "goal": "Add work/t.txt.", "acceptanceCriteria": ["It exists."],
    "scope": {"paths": ["work/t.txt"]},
})  # fmt: skip


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class PaperForge:
    """A forge that keeps everything in memory: branches, kept refs, merges, PRs, checks."""

    base: str = BASE
    branches: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)
    pulls: dict[int, str] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    comments: dict[tuple[int, str], str] = field(default_factory=dict)

    def base_sha(self) -> str:
        return self.base

    def merge_base(self, a: str, b: str) -> str:
        del a, b
        return self.base

    def diff(self, base: str, head: str) -> str:
        del base, head
        return ""

    def checkout_into(self, dest: Path, ref: str) -> None:
        raise AssertionError("an executor that checks out must be given a forge that can")

    def credentials_for(self, role: str | None) -> dict[str, str]:
        return {"token": f"read-only-{role}"}

    def commit_patch(self, parent: str, diff: str, message: str) -> str:
        return sha(parent + diff + message)

    def push_branch(self, branch: str, sha: str) -> None:
        self.branches[branch] = sha

    def keep(self, task: str, label: str, sha: str) -> str:
        ref = f"refs/paper/{task}/{label}"
        self.kept[ref] = sha
        return ref

    def close(self) -> None:
        """Nothing held."""

    def forget(self, task: str) -> list[str]:
        gone = [ref for ref in self.kept if ref.startswith(f"refs/paper/{task}/")]
        for ref in gone:
            del self.kept[ref]
        return gone

    def merge(
        self, *, task: str, branch: str, head_sha: str, method: str, title: str, body: str,
        delete_branch: bool,
    ) -> MergeOutcome:  # fmt: skip
        del task, method, title, body, delete_branch
        assert self.branches[branch] == head_sha, "merges exactly the pushed, verified head"
        self.merged.append(head_sha)
        return MergeOutcome("merged", head_sha, merged_sha=sha("merge" + head_sha))

    def rebase_onto(self, head_sha: str, *, upstream: str | None, onto: str | None) -> Rebased:
        return Rebased(sha(f"{upstream}{head_sha}{onto or self.base}"))

    # A pull-request forge: the loop must find this by capability.
    def ensure_pull_request(self, branch: str, title: str, body: str) -> PullRequest:
        del title, body
        number = next((n for n, b in self.pulls.items() if b == branch), len(self.pulls) + 1)
        self.pulls[number] = branch
        return PullRequest(number, f"paper://pulls/{number}", self.branches[branch])

    def comment_all(self, number: int, comments: Sequence[tuple[str, str]]) -> None:
        for key, text in comments:
            self.comments[number, key] = text

    def label_phase(self, number: int, phase: str) -> None:
        self.labels[number] = phase

    def checks(self, sha: str) -> list[ForgeCheck]:
        del sha
        return [ForgeCheck("test", "success")]


@dataclass
class ScriptedExecutor:
    """Every attempt ends at once with its stage's scripted result."""

    launched: list[Launch] = field(default_factory=list)
    ended: dict[str, Outcome] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    async def launch(self, launch: Launch) -> None:
        self.launched.append(launch)
        stage = launch.attempt.stage.slug
        self.ended[launch.attempt.pod] = Outcome(result(stage, launch.attempt.task))

    async def observe(self, attempt: Attempt) -> Observed:
        return self.ended.get(attempt.pod, Absent())

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        self.removed.append(attempt.pod)
        self.ended.pop(attempt.pod, None)


@dataclass
class Forges:
    registry: ForgeRegistry
    workdir: Path
    made: dict[str, Forge] = field(default_factory=dict)

    async def forge(self, name: str, spec: FactorySpecSpec) -> Forge:
        if name not in self.made:
            self.made[name] = self.registry.build(spec.repository, self.workdir, {})
        return self.made[name]


async def run_to_the_end(loop: Reconciler) -> None:
    for _ in range(100):
        if not await loop.step():
            return
    raise AssertionError("the loop kept moving")


async def test_a_forge_and_an_executor_registered_here_carry_a_task_to_merged(
    tmp_path: Path,
) -> None:
    paper = PaperForge()
    registry = ForgeRegistry()

    def build(repository: Repository, workdir: Path, secret: dict[str, str]) -> Forge:
        del repository, workdir, secret
        return paper

    registry.register("git", build)
    factory = FactorySpecSpec.model_validate({
        "repository": {"url": "paper://shop"},
        "checks": [{"name": "test", "command": "true"}],
    })  # fmt: skip
    store = MemoryStore({"paper": factory}, {"t": Record("t", "paper", SPEC, AgentTaskStatus())})
    executor, said = ScriptedExecutor(), Said()
    loop = Reconciler(store, executor, Forges(registry, tmp_path), said,
                      now=lambda: datetime.now(UTC))  # fmt: skip

    await run_to_the_end(loop)

    status = store.records["t"].status
    assert status.phase == Phase.MERGED, "\n".join(said.lines)
    assert [launch.attempt.pod for launch in executor.launched] == [
        "t-plan-1", "t-plan-review-1", "t-implement-1", "t-ci-1", "t-code-review-1",
    ]  # fmt: skip
    assert executor.removed == [launch.attempt.pod for launch in executor.launched]
    implement = executor.launched[2]
    assert implement.contract is not None and implement.contract.role.value == "implementer"
    assert implement.credentials == {"token": "read-only-implementer"}
    assert executor.launched[3].checks and executor.launched[3].contract is None
    assert paper.merged == [status.head_sha], "the implementer's committed patch merged"
    assert list(paper.kept.values()) == [status.head_sha], "every patch kept on the forge"
    assert status.pull_request is not None and paper.pulls == {1: "factory/t"}
    assert paper.labels[1] == "Merged", "the PR is found by capability and kept current"
    assert "plan" in {key for _, key in paper.comments}


async def test_forge_checks_are_asked_of_a_forge_that_has_them(tmp_path: Path) -> None:
    paper = PaperForge()
    registry = ForgeRegistry()
    registry.register("github", lambda repository, workdir, secret: paper)
    factory = FactorySpecSpec.model_validate({
        "repository": {"url": "https://github.com/o/r", "forge": "github",
                       "credentials": {"token": {"secretName": "gh"}}},
        "ci": {"source": "github-checks", "requiredChecks": ["test"]},
    })  # fmt: skip
    store = MemoryStore({"paper": factory}, {"t": Record("t", "paper", SPEC, AgentTaskStatus())})
    executor, said = ScriptedExecutor(), Said()
    loop = Reconciler(store, executor, Forges(registry, tmp_path), said)

    await run_to_the_end(loop)

    assert store.records["t"].status.phase == Phase.MERGED, "\n".join(said.lines)
    stages = [launch.attempt.stage.slug for launch in executor.launched]
    assert "ci" not in stages, "CI ran on the forge, not as an attempt"
    assert "CIPassed" in [h.reason for h in store.records["t"].status.history]


@dataclass
class StuckForge(PaperForge):
    """A forge whose every read of the base waits until the test lets it go (a slow fetch)."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def base_sha(self) -> str:
        self.entered.set()
        self.release.wait()
        return self.base


@dataclass
class Launches(ScriptedExecutor):
    """Tells the test when a task's first attempt is launched."""

    seen: dict[str, asyncio.Event] = field(default_factory=dict)

    async def launch(self, launch: Launch) -> None:
        await super().launch(launch)
        self.seen.setdefault(launch.attempt.task, asyncio.Event()).set()


async def test_one_factorys_slow_forge_does_not_hold_up_another_factorys_tasks(
    tmp_path: Path,
) -> None:
    stuck, paper = StuckForge(), PaperForge()
    registry = ForgeRegistry()
    registry.register("git", lambda repository, workdir, secret: (
        stuck if repository.url.endswith("slow") else paper))  # fmt: skip
    specs = {name: FactorySpecSpec.model_validate({
        "repository": {"url": f"paper://{name}"}, "checks": [{"name": "t", "command": "true"}],
    }) for name in ("slow", "fast")}  # fmt: skip
    records = {name: Record(name, name, SPEC.model_copy(update={
        "factory_ref": name, "scope": Scope(paths=[f"work/{name}.txt"])}),
                            AgentTaskStatus()) for name in ("slow", "fast")}  # fmt: skip
    store = MemoryStore(specs, records)
    executor = Launches()
    fast_launched = executor.seen.setdefault("fast", asyncio.Event())
    said = Said()
    loop = Reconciler(store, executor, Forges(registry, tmp_path), said)
    passes = asyncio.create_task(run_to_the_end(loop))
    try:
        await asyncio.to_thread(stuck.entered.wait)
        # The slow factory's work waits on its forge; the other factory's goes on meanwhile.
        async with asyncio.timeout(60):  # reason: fails only when the fast task never launches
            await fast_launched.wait()
        assert "slow-plan-1" not in {launch.attempt.pod for launch in executor.launched}
    finally:
        stuck.release.set()
    await passes
    phases = {name: record.status.phase for name, record in store.records.items()}
    assert phases == {"slow": Phase.MERGED, "fast": Phase.MERGED}, "\n".join(said.lines)
