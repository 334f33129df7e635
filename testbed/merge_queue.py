"""A factory's merge queue on the shared reconcile loop, with a real git remote and a CI that
judges each head by its tree: tasks start in Merging (reviewed, verified on the base as it
was), and the loop merges them. A task marked red adds a file that breaks the build, so
every head that carries its change fails CI, as a change that breaks the tests would.

For the queue's tests and its benchmark (`benchmarks/queue.py`): what is counted is the CI
runs the queue starts and the order and trees that land, not agents.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agentfactory.core.executors import Absent, Outcome, Running
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.handoff import CheckReport, CheckRun
from agentfactory.core.phases import Phase, Stage
from agentfactory.core.task import AgentTaskSpec
from agentfactory.forge.git import GitForge
from agentfactory.loop.ports import Record
from agentfactory.loop.reconciler import Reconciler
from testbed.builders import T0, Driver, factory
from testbed.gitutil import bare_remote
from testbed.memory import MemoryStore, Said

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.executors import Attempt, Launch, Observed
    from agentfactory.core.forges import Forge

FACTORY = "line"


@dataclass
class TreeCI:
    """CI that fails a head whose tree holds a `*.broken` file, after *seconds*; agents'
    attempts never end (a task sent back leaves the queue, which is all that is watched)."""

    remote: Path
    seconds: float = 0.0
    runs: list[tuple[str, str]] = field(default_factory=list)
    """(task, head) of every CI run started."""
    _pending: dict[str, tuple[asyncio.Task[None] | None, Outcome | None]] = field(
        default_factory=dict
    )

    async def launch(self, launch: Launch) -> None:
        attempt = launch.attempt
        if attempt.stage != Stage.CI:
            self._pending[attempt.pod] = (None, None)  # runs for ever
            return
        self.runs.append((attempt.task, launch.ref))
        listed = await asyncio.create_subprocess_exec(
            "git", "ls-tree", "-r", "--name-only", launch.ref, cwd=self.remote,
            stdout=asyncio.subprocess.PIPE)  # fmt: skip
        files = (await listed.communicate())[0].decode().split()
        broken = [f for f in files if f.endswith(".broken")]
        said = f"broken by {', '.join(broken)}" if broken else "ok"
        check = CheckRun(name="test", command="make test", exit_code=1 if broken else 0,
                         status="failed" if broken else "passed", output_tail=said)  # fmt: skip
        report = CheckReport(checks=[check]).model_dump_json(by_alias=True)
        wait = asyncio.create_task(asyncio.sleep(self.seconds)) if self.seconds else None
        self._pending[attempt.pod] = (wait, Outcome(report))

    async def observe(self, attempt: Attempt) -> Observed:
        if attempt.pod not in self._pending:
            return Absent()
        wait, outcome = self._pending[attempt.pod]
        if outcome is None or (wait is not None and not wait.done()):
            return Running()
        return outcome

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        del keep
        wait, _ = self._pending.pop(attempt.pod, (None, None))
        if wait is not None:
            wait.cancel()

    def running(self) -> list[asyncio.Task[None]]:
        """The CI runs still going (agents' attempts, which never end, are not waited on)."""
        return [w for w, _ in self._pending.values() if w is not None and not w.done()]


@dataclass
class _Forges:
    made: GitForge

    async def forge(self, name: str, spec: FactorySpecSpec) -> Forge:
        del name, spec
        return self.made


@dataclass
class QueueRun:
    """A factory whose tasks wait in its merge queue."""

    remote: Path
    forge: GitForge
    store: MemoryStore
    ci: TreeCI
    said: Said
    loop: Reconciler

    def status(self, name: str) -> Any:
        return self.store.records[name].status

    def merged(self) -> list[str]:
        """The tasks on the base branch, oldest first (from the merge commits' trailers)."""
        log = self.forge.git("log", "--reverse", "--format=%(trailers:key=Agentfactory-Task,"
                             "valueonly)", "origin/main")  # fmt: skip
        return [line for line in log.split() if line]

    def main_tree(self) -> str:
        return self.forge.git("rev-parse", "origin/main^{tree}")

    async def run(self) -> float:
        """Pass until the queue is empty (or nothing can move); the seconds it took."""
        began = time.monotonic()
        for _ in range(100000):
            if await self.loop.step():
                continue
            running = self.ci.running()
            if not running:
                break
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        return time.monotonic() - began


def queue_of(
    root: Path, count: int, *, red: tuple[int, ...] = (), depth: int = 4,
    ci_seconds: float = 0.0, method: str = "squash", moved: bool = True, batch: int = 1,
) -> QueueRun:  # fmt: skip
    """*count* tasks `t00`, `t01`, ... queued in that order, each verified and reviewed on the
    base as it was when they were built; *moved*: a person's commit lands on the base after
    that (so even the first must be verified again)."""
    remote = bare_remote(root, "queue")
    forge = GitForge(remote=str(remote), workdir=root / "forge")
    base = forge.base_sha()
    spec = factory(merge={"speculationDepth": depth, "method": method, "batchSize": batch},
                   concurrency={"maxActiveTasks": max(count, 1), "exclusivePaths": False},
                   retries={"perStage": 3, "maxTotalAttempts": 200})  # fmt: skip
    spec = FactorySpecSpec.model_validate({
        **spec.model_dump(by_alias=True), "repository": {"url": str(remote)}})  # fmt: skip
    records = {}
    for index in range(count):
        name = f"t{index:02d}"
        path = f"work/{name}.{'broken' if index in red else 'txt'}"
        diff = (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n"
                f"+++ b/{path}\n@@ -0,0 +1 @@\n+{name}\n")  # fmt: skip
        head = forge.commit_patch(base, diff, f"{name}: add {path}")
        task = AgentTaskSpec.model_validate({
            "factoryRef": FACTORY, "goal": f"Add {path}.", "acceptanceCriteria": ["It exists."],
            "scope": {"paths": ["**"]}})  # fmt: skip
        driver = Driver(factory=spec, spec=task, name=name,
                        clock=T0 + timedelta(minutes=index)).to(Phase.MERGING)  # fmt: skip
        status = driver.status
        status.head_sha = head
        assert status.ci is not None
        status.ci.head_sha = head
        forge.push_branch(status.branch or "", head)
        records[name] = Record(name, FACTORY, task, status, created=T0)
    if moved:
        diff = ("diff --git a/NOTES b/NOTES\nnew file mode 100644\n--- /dev/null\n+++ b/NOTES\n"
                "@@ -0,0 +1 @@\n+a person's commit\n")  # fmt: skip
        pushed = forge.commit_patch(base, diff, "a person's commit")
        forge.git("push", "--quiet", "origin", f"{pushed}:refs/heads/main")
    store = MemoryStore({FACTORY: spec}, records)
    ci, said = TreeCI(remote, ci_seconds), Said()
    loop = Reconciler(store, ci, _Forges(forge), said, now=lambda: T0 + timedelta(hours=1))
    return QueueRun(remote, forge, store, ci, said, loop)
