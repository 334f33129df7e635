"""`agentfactory local`: the factory's pipeline on one machine.

The driver is the operator in miniature. It loads FactorySpecs and AgentTasks from files,
keeps each task's status in the state directory (as a cluster keeps it in the resource),
and repeats one level-triggered step until nothing can move:

1. the scheduler's observations (dependencies ready, admissions, the merge slot, cycles);
2. otherwise the work the first task's status calls for: run its current stage attempt
   (agents and sandbox CI through the LocalExecutor) or its merge (through the GitForge),
   and feed the outcome to the core.

Work is derived from the saved status, not from a queue, so a run killed at any moment and
started again on the same state directory re-runs the interrupted attempt under the same
name and continues; the forge recognises a merge that already landed, so none lands twice.
Stages run one at a time, round robin across the admitted tasks; admission follows
`concurrency` and path locks.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from agentfactory.core.actions import Notify, PushBranch
from agentfactory.core.factory import FactorySpec
from agentfactory.core.observations import HumanAction, Observation, SpecInvalid
from agentfactory.core.phases import Phase, Stage
from agentfactory.core.pipeline import Decision, TaskView, decide
from agentfactory.core.scheduler import TaskInfo, find_cycles, schedule
from agentfactory.core.task import AgentTask, AgentTaskStatus
from agentfactory.core.work import Merge, RunAttempt, work_for
from agentfactory.forge.git import GitForge
from agentfactory.local.executor import LocalExecutor
from agentfactory.local.state import StateStore
from agentfactory.stages import (
    NO_FACTORY,
    agent_inputs,
    agent_observation,
    ci_checks,
    ci_observation,
    merge_observation,
)
from agentfactory.validation import load_file, validate_document

if TYPE_CHECKING:
    from collections.abc import Callable


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
    forge: GitForge
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
    factories: dict[str, Factory] = field(default_factory=dict, init=False)
    tasks: dict[str, AgentTask] = field(default_factory=dict, init=False)
    _last: str | None = field(default=None, init=False)
    _statuses: dict[str, AgentTaskStatus] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()  # git runs in other directories
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
        if repo.forge != "git":
            problems.append(
                f"FactorySpec/{name}: spec.repository.forge: is '{repo.forge}';"
                " `agentfactory local` runs the 'git' forge only"
            )
            return
        forge = GitForge(
            remote=self._remote(name, repo.url, here),
            workdir=self.state_dir / "forges" / name,
            base_branch=repo.base_branch,
            branch_prefix=repo.branch_prefix,
        )
        executor = LocalExecutor(
            forge=forge,
            state_dir=self.state_dir / "sandboxes" / name,
            timeout_seconds=spec.spec.sandbox.timeout_seconds,
            replay_dir=self.replay_dir,
            say=self.out,
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
        """Step until nothing can move; print the outcome; 1 if any task needs a person."""
        while self.step():
            pass
        return self.finish()

    def step(self) -> bool:
        """One scheduling pass, or else one unit of work. False when nothing could move."""
        infos = [self._info(name) for name in self.tasks]
        specs = {name: f.spec.spec for name, f in self.factories.items()}
        result = schedule(specs, infos)
        for name, observation in result.observations:
            self.apply(name, observation)
        if result.observations:
            return True
        # Round robin from the task after the one that worked last, so admitted tasks
        # interleave as they would run side by side.
        order = self._order()
        start = (order.index(self._last) + 1) if self._last in order else 0
        for name in order[start:] + order[:start]:
            if self.work(name):
                self._last = name
                return True
        return False

    def _order(self) -> list[str]:
        return sorted(self.tasks, key=lambda n: (-self.tasks[n].spec.priority, n))

    def _info(self, name: str) -> TaskInfo:
        task, status = self.tasks[name], self.status(name)
        return TaskInfo(
            name=name,
            factory=task.spec.factory_ref,
            phase=status.phase,
            depends_on=tuple(task.spec.depends_on),
            scope=tuple(task.spec.scope.paths),
            priority=task.spec.priority,
            created=task.metadata.creation_timestamp,
            merge_running=status.phase == Phase.MERGING and status.attempt > 0,
            phase_since=status.last_transition_time,
        )

    def apply(self, name: str, observation: Observation) -> Decision:
        """Feed one observation to the core, save the status, perform immediate actions."""
        task = self.tasks[name]
        factory = self.factories.get(task.spec.factory_ref)
        spec = factory.spec.spec if factory else None
        status = self.status(name)
        decision = decide(
            TaskView(name, task.spec, status), spec or NO_FACTORY, observation, now=self.now()
        )
        if decision.ignored:
            return decision
        self.store.save(name, decision.status)
        self._statuses[name] = decision.status
        for source, trigger, target in decision.transitions:
            where = decision.status
            stage = f"{where.stage}#{where.attempt}" if where.stage and where.attempt else "-"
            self.out(
                f"{self.now():%H:%M:%S}  {name:<22} {source:>16} -> {target:<16}"
                f" {stage:<14} {trigger}: {where.message or ''}".rstrip()
            )
        for action in decision.actions:
            if isinstance(action, PushBranch) and factory:
                factory.forge.push_branch(action.branch, action.head_sha)
            elif isinstance(action, Notify):
                self.out(f"          ! {action.message}")
        return decision

    # -- work ------------------------------------------------------------------------------

    def work(self, name: str) -> bool:
        """Perform the work the task's status calls for; False when there is none here."""
        factory = self.factories.get(self.tasks[name].spec.factory_ref)
        if factory is None:
            return False
        work = work_for(name, self.status(name), factory.spec.spec)
        if isinstance(work, Merge):
            spec = self.tasks[name].spec
            self.apply(name, merge_observation(name, spec, work, factory.forge))
        elif isinstance(work, RunAttempt) and work.stage == Stage.CI:
            self.apply(name, self._ci(name, factory, work))
        elif isinstance(work, RunAttempt):
            self.apply(name, self._agent(name, factory, work))
        else:  # nothing, or checks on a forge this mode does not run
            return False
        return True

    def _ci(self, name: str, factory: Factory, work: RunAttempt) -> Observation:
        status = self.status(name)
        head = status.head_sha or ""
        factory.forge.push_branch(status.branch or "", head)  # idempotent: a crash may come first
        checks = ci_checks(self.tasks[name].spec, factory.spec.spec)
        self.out(f"          running CI {work.name} on {head[:12]} ({len(checks)} checks)")
        within = factory.spec.spec.ci.timeout_seconds
        runs = factory.executor.run_checks(pod=work.name, ref=head, checks=checks, within=within)
        return ci_observation(status, runs)

    def _agent(self, name: str, factory: Factory, work: RunAttempt) -> Observation:
        status, task = self.status(name), self.tasks[name]
        inputs = agent_inputs(name, task.spec, factory.spec.spec, status, factory.forge)
        mode = "replay" if self.replay_dir else inputs.contract.model
        self.out(f"          running {inputs.contract.role.value} {work.name} ({mode})")
        outcome = factory.executor.run_agent(
            pod=work.name, contract=inputs.contract, ref=inputs.ref,
            constitution=factory.constitution,
        )  # fmt: skip
        return agent_observation(name, factory.forge, work.stage, work.attempt, inputs.base,
                                 outcome)  # fmt: skip

    # -- people and the end ------------------------------------------------------------------

    def human(self, name: str, action: str, by: str | None = None) -> Decision:
        """Apply a person's approve, retry or cancel to *name*."""
        if name not in self.tasks:
            raise LoadError(f"no task '{name}'; tasks are {sorted(self.tasks)}")
        who = by or os.environ.get("USER") or getpass.getuser()
        decision = self.apply(name, HumanAction(action=action, by=who))
        if decision.ignored:
            self.out(f"{name}: {action} ignored: {decision.ignored}")
        return decision

    def finish(self) -> int:
        """Print one line per task, write final statuses as YAML, return the exit code."""
        status_dir = self.state_dir / "status"
        status_dir.mkdir(parents=True, exist_ok=True)
        stuck = []
        self.out("")
        for name in self._order():
            status = self.status(name)
            data = status.model_dump(mode="json", by_alias=True, exclude_none=True)
            (status_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
            extra = ""
            if status.phase == Phase.AWAITING_APPROVAL:
                extra = f"  -> agentfactory local approve {name} --state {self.state_dir}"
            elif status.phase in (Phase.NEEDS_ATTENTION, Phase.FAILED):
                stuck.append(name)
                extra = f"  ({status.message})"
            merged = f" {status.merged_sha[:12]}" if status.merged_sha else ""
            self.out(f"  {name:<22} {status.phase:<17}{merged}{extra}")
        self.out(f"statuses written to {status_dir}")
        return 1 if stuck else 0


def replay_dir_for(paths: list[str]) -> Path | None:
    """Recorded replays beside the manifests (`replays/`), used when no API key is set."""
    for raw in paths:
        base = Path(raw) if Path(raw).is_dir() else Path(raw).parent
        if (base / "replays").is_dir():
            return base / "replays"
    return None


def announce_mode(replay: Path | None, out: Callable[[str], None]) -> None:
    if replay is not None:
        out(
            f"No ANTHROPIC_API_KEY: agents answer from the recorded replays in {replay}"
            " (every result is labelled replay)."
        )
    else:
        out("Agents use the Anthropic API (ANTHROPIC_API_KEY is set).")
