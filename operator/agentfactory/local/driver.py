"""`agentfactory local`: the factory's pipeline on one machine.

The driver is the operator in miniature: the same reconcile loop (`agentfactory.loop`) over
FactorySpecs and AgentTasks loaded from files, each task's status kept in the state
directory (as a cluster keeps it in the resource), stage attempts run as sandboxed processes
(`LocalExecutor`) and merges done by the `GitForge`. Passes repeat until nothing can move.

Work is derived from the saved status, not from a queue, so a run killed at any moment and
started again on the same state directory re-runs the interrupted attempt under the same
name and continues; the forge recognises a merge that already landed, so none lands twice.
Admission follows `concurrency` and path locks; each pass launches every admitted task's
stage, highest priority first, and they run side by side (up to the machine's cores) while
the loop goes on: a pass that moves nothing waits for the next attempt to end.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from agentfactory.core.factory import FactorySpec
from agentfactory.core.forges import Forge, ForgeError
from agentfactory.core.observations import HumanAction, SpecInvalid
from agentfactory.core.phases import Phase
from agentfactory.core.scheduler import find_cycles
from agentfactory.core.task import AgentTask, AgentTaskStatus
from agentfactory.forge.registry import build_forge
from agentfactory.gateway.running import LoopbackGateway
from agentfactory.local.executor import LocalExecutor, attempt_pool
from agentfactory.local.parts import Executors, FileStore, Forges, Lines
from agentfactory.local.progress import Progress
from agentfactory.local.state import StateStore
from agentfactory.loop.ports import Record
from agentfactory.loop.reconciler import Reconciler
from agentfactory.pictures.report import run_report
from agentfactory.validation import load_file, validate_document

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    from agentfactory.core.executors import Outcome
    from agentfactory.core.observations import Observation
    from agentfactory.core.pipeline import Decision


async def first_ended(running: list[Future[Outcome]]) -> None:
    """Wait until one of the attempts *running* ends. An attempt's outcome or error is read
    from its own future, never from the wrappers awaited here: each wrapper marks its error
    read, or asyncio would print it as a traceback ("exception was never retrieved") once
    the wrapper is collected, as when a Ctrl-C kills a sandbox's git clone."""
    waiting = [asyncio.wrap_future(f) for f in running]
    for wrapper in waiting:
        wrapper.add_done_callback(lambda w: w.cancelled() or w.exception())
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)


class LoadError(Exception):
    """The manifests cannot be run; the message lists every problem."""


def manifest_files(paths: list[str]) -> list[Path]:
    """Files named, plus the top-level YAML files of directories named (not recursive)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


@dataclass
class Factory:
    """A loaded FactorySpec with its forge and executor."""

    spec: FactorySpec
    forge: Forge
    executor: LocalExecutor
    constitution: str | None = None
    """The text `agents.constitution` names (a ConfigMap among the files given)."""


@dataclass
class LocalFactory:
    """One local run over a state directory."""

    paths: list[str]
    state_dir: Path
    replay_dir: Path | None = None
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))  # noqa: T201
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    terminal: bool = False
    """Show the agents at work as a live table (stdout is a terminal), not as lines."""
    factories: dict[str, Factory] = field(default_factory=dict, init=False)
    tasks: dict[str, AgentTask] = field(default_factory=dict, init=False)
    _statuses: dict[str, AgentTaskStatus] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()  # git runs in other directories
        # The model key stays in this process: agents reach the model through a gateway on
        # loopback with a token per attempt (replays call no model).
        self.gateway = LoopbackGateway() if self.replay_dir is None else None
        # A live table when a person watches the terminal this run prints to.
        self.progress = Progress(self.out, terminal=self.terminal)
        # Stages of different tasks run side by side, as many as the machine has cores (each
        # factory's concurrency.maxActiveTasks bounds its own tasks).
        self.pool = attempt_pool(os.cpu_count() or 1)
        self.store = StateStore(self.state_dir)
        self._load()

    def status(self, name: str) -> AgentTaskStatus:
        """The task's status: read from the state directory once, then kept in memory (every
        change is written through, so the directory stays the record a restart resumes from)."""
        if name not in self._statuses:
            self._statuses[name] = self.store.load(name)
        return self._statuses[name]

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> None:
        problems: list[str] = []
        configmaps: dict[str, dict[str, str]] = {}  # the constitutions factories may name
        for path in manifest_files(self.paths):
            docs, load_problems = load_file(path)
            problems += [str(p) for p in load_problems]
            for index, doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                    name = str((doc.get("metadata") or {}).get("name", ""))
                    configmaps[name] = dict(doc.get("data") or {})
                item, doc_problems = validate_document(str(path), index, doc)
                problems += [str(p) for p in doc_problems if p.severity == "error"]
                if item is None:
                    continue
                if isinstance(item.resource, FactorySpec):
                    self._add_factory(item.resource, path.parent, problems)
                elif isinstance(item.resource, AgentTask):
                    self.tasks[item.resource.metadata.name] = item.resource
        for name, factory in self.factories.items():
            ref = factory.spec.spec.agents.constitution
            if ref is None:
                continue
            factory.constitution = configmaps.get(ref.name, {}).get(ref.key)
            factory.executor.constitution = factory.constitution
            if factory.constitution is None:
                problems.append(
                    f"FactorySpec/{name}: spec.agents.constitution: ConfigMap '{ref.name}' with"
                    f" the key '{ref.key}' is not among the files given; add its manifest"
                )
        if problems:
            raise LoadError("\n".join(problems))
        if not self.tasks:
            raise LoadError(f"no AgentTasks in {self.paths}; name the files or directories")
        for cycle in find_cycles({n: t.spec.depends_on for n, t in self.tasks.items()}):
            self.out(f"dependency cycle {' -> '.join(cycle)}: these tasks will fail")
        for name, task in self.tasks.items():
            if task.spec.factory_ref not in self.factories:
                message = (
                    f"spec.factoryRef: FactorySpec '{task.spec.factory_ref}' is not among"
                    " the files given; add it or fix the name"
                )
                self.apply(name, SpecInvalid(message=message))

    def _add_factory(self, spec: FactorySpec, here: Path, problems: list[str]) -> None:
        name = spec.metadata.name
        repo = spec.spec.repository
        local = repo.model_copy(update={"url": self._remote(name, repo.url, here)})
        try:  # no credentials: a local run reads no Secrets
            forge = build_forge(local, self.state_dir / "forges" / name, {})
        except ForgeError as exc:
            problems.append(f"FactorySpec/{name}: spec.repository: {exc}; `agentfactory local`"
                            " runs forges that need no credentials (the 'git' forge)")  # fmt: skip
            return
        executor = LocalExecutor(
            forge=forge,
            state_dir=self.state_dir / "sandboxes" / name,
            timeout_seconds=spec.spec.sandbox.timeout_seconds,
            replay_dir=self.replay_dir,
            say=self.out,
            progress=self.progress,
            gateway=self.gateway,
            pool=self.pool,
        )
        self.factories[name] = Factory(spec, forge, executor)

    def _remote(self, name: str, url: str, here: Path) -> str:
        """The remote's URL; a `.bundle` becomes a bare repository in the state directory."""
        local = (here / url) if not Path(url).is_absolute() and "://" not in url else Path(url)
        if not url.endswith(".bundle"):
            return str(local) if local.exists() else url
        bare = self.state_dir / "remotes" / f"{name}.git"
        if not bare.exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(  # noqa: S603 - fixed argv
                ["git", "clone", "--quiet", "--bare", str(local), str(bare)],  # noqa: S607
                check=True,
                capture_output=True,
            )
        return str(bare)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Pass until nothing can move; print the outcome; 1 if any task needs a person."""
        try:
            asyncio.run(self._run())
        except BaseException:  # Ctrl-C: the sandboxes run in sessions of their own
            for factory in self.factories.values():
                factory.executor.stop()
            raise
        finally:
            if self.gateway is not None:
                self.gateway.stop()
        return self.finish()

    async def _run(self) -> None:
        while await self._step():
            pass

    async def _step(self) -> bool:
        """One pass, or when nothing moved, the end of a running attempt (whose outcome the
        next pass reads); False when nothing could move and nothing runs."""
        if await self.reconciler.step():
            return True
        running = [f for factory in self.factories.values() for f in factory.executor.running()]
        if not running:
            return False
        await first_ended(running)
        return True

    def step(self) -> bool:
        """One pass (or the end of a running attempt); False when nothing could move."""
        return asyncio.run(self._step())

    @cached_property
    def reconciler(self) -> Reconciler:
        """The shared loop over this run's files, sandboxes and forges."""
        return Reconciler(FileStore(self), Executors(self), Forges(self), Lines(self))

    def save(self, name: str, status: AgentTaskStatus) -> None:
        """Keep *status* as the task's, in memory and in the state directory."""
        self.store.save(name, status)
        self._statuses[name] = status

    def order(self) -> list[str]:
        """The tasks, highest priority first."""
        return sorted(self.tasks, key=lambda n: (-self.tasks[n].spec.priority, n))

    def record(self, name: str) -> Record:
        """The task as the loop reads it."""
        task = self.tasks[name]
        created = task.metadata.creation_timestamp
        return Record(name=name, factory=task.spec.factory_ref, spec=task.spec,
                      status=self.status(name), created=created)  # fmt: skip

    def apply(self, name: str, observation: Observation) -> Decision:
        """Feed one observation to the core through the loop (save, tell, act)."""
        factory = self.factories.get(self.tasks[name].spec.factory_ref)
        spec = factory.spec.spec if factory else None

        async def go() -> Decision:
            return await self.reconciler.apply(self.record(name), spec, observation)

        return asyncio.run(go())

    # -- people and the end ------------------------------------------------------------------

    def human(self, name: str, action: str, by: str | None = None) -> Decision:
        """Apply a person's approve, retry or cancel to *name*."""
        if name not in self.tasks:
            raise LoadError(f"no task '{name}'; the tasks are {', '.join(sorted(self.tasks))}")
        who = by or os.environ.get("USER") or getpass.getuser()
        decision = self.apply(name, HumanAction(action=action, by=who))
        if decision.ignored:
            self.out(f"{name}: {action} ignored: {decision.ignored}")
        return decision

    def report(self) -> str:
        """The run's HTML report, from the state directory."""
        # Imported here: it reads the manifests with this module's `manifest_files`.
        from agentfactory.local.pictures import record_of

        records = [record_of(self.state_dir, task, self.status(name))
                   for name, task in self.tasks.items()]  # fmt: skip
        title = f"agentfactory local: {', '.join(Path(p).name for p in self.paths)}"
        return run_report(records, title=title, now=self.now())

    def finish(self) -> int:
        """Print one line per task, write final statuses as YAML, return the exit code."""
        if self.gateway is not None:
            self.gateway.stop()
        status_dir = self.state_dir / "status"
        status_dir.mkdir(parents=True, exist_ok=True)
        stuck = []
        self.out("")
        for name in self.order():
            status = self.status(name)
            data = status.model_dump(mode="json", by_alias=True, exclude_none=True)
            (status_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
            extra = ""
            if status.phase == Phase.AWAITING_APPROVAL:
                extra = f"  -> agentfactory local approve {name} --state {self.state_dir}"
            elif status.phase not in (Phase.MERGED, Phase.CANCELLED):
                # Needs a person, or could not move when the run stopped (a repository that
                # cannot be reached, a dependency that will not merge): either way, not done.
                stuck.append(name)
                extra = f"  ({status.message})" if status.message else ""
            merged = f" {status.merged_sha[:12]}" if status.merged_sha else ""
            self.out(f"  {name:<22} {status.phase:<17}{merged}{extra}")
            proof = status.ci.proof if status.ci else None
            if proof is not None:
                first, *rest = proof.lines()
                self.out(f"    tests that prove the fix: {first}")
                for line in rest:
                    self.out(f"      {line}")
        self.out(f"statuses written to {status_dir}")
        report = self.state_dir / "report.html"
        report.write_text(self.report(), encoding="utf-8")
        self.out(f"the run's report (graph, timelines, patches, usage): {report}")
        return 1 if stuck else 0
