"""`agentfactory local` as a person runs it: the manifests checked before anything starts,
one run per state directory, agents that answer from replays unless the real model is
chosen knowingly, and a stop with Ctrl-C that says how to resume.

Exit codes: 0 every task ended or waits for an approval; 1 a task needs a person
(NeedsAttention, Failed); 2 the input or the environment is wrong (the message says what);
3 an approve, retry or cancel did not apply (the message says why); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from agentfactory.local.driver import LoadError, LocalFactory, manifest_files
from agentfactory.local.lock import LOCK_FILE, StateLockedError, holding
from agentfactory.validation import load_file

ACTIONS = ("approve", "retry", "cancel")
EXIT_NEEDS_A_PERSON, EXIT_USAGE, EXIT_IGNORED, EXIT_INTERRUPTED = 1, 2, 3, 130


class UsageError(Exception):
    """The command cannot run as given; the message says why and what to do."""


@dataclass(frozen=True)
class Agents:
    """Where the agents' answers come from."""

    replay: Path | None
    """Recorded replays, or None for the real model."""
    why: str
    """What the person is told before anything runs."""


def replay_dir_for(paths: list[str]) -> Path | None:
    """Recorded replays beside the manifests (`replays/`)."""
    for raw in paths:
        base = Path(raw) if Path(raw).is_dir() else Path(raw).parent
        if (base / "replays").is_dir():
            return base / "replays"
    return None


def task_names(paths: list[str]) -> list[str]:
    """The AgentTasks the manifests name (unvalidated: loading says what is wrong)."""
    names = []
    for path in manifest_files(paths):
        for _, doc in load_file(path)[0]:
            if isinstance(doc, dict) and doc.get("kind") == "AgentTask":
                names.append(str((doc.get("metadata") or {}).get("name")))
    return names


def choose_agents(paths: list[str], *, replay: bool, live: bool, key: bool) -> Agents:
    """Replays when asked for, or when they cover every task; the real model when asked for,
    or when a key is set and no replays cover the run. A demo stays a demo."""
    found = replay_dir_for(paths)
    covered = found is not None and all(
        (found / f"{name}-plan-1.json").exists() for name in task_names(paths)
    )
    if replay and live:
        raise UsageError("--replay and --live contradict each other; choose one")
    if replay:
        if found is None:
            raise UsageError("--replay: there is no replays/ directory beside the manifests")
        return Agents(found, f"Agents answer from the recorded replays in {found} (--replay).")
    if live or (key and not covered):
        if not key:
            raise UsageError("--live needs the model key: export ANTHROPIC_API_KEY=...")
        return Agents(None, "")
    if covered and found is not None:
        unused = " ANTHROPIC_API_KEY is set but not used: pass --live to call the model." * key
        return Agents(found, f"Agents answer from the recorded replays in {found}, which cover"
                             f" every task (each result is labelled replay).{unused}")  # fmt: skip
    raise UsageError(
        "no ANTHROPIC_API_KEY, and no recorded replays cover these tasks (replays/ beside the"
        " manifests, <task>-plan-1.json and on); export ANTHROPIC_API_KEY=... to run real"
        " agents (it costs money: up to budget.maxCostUSDPerTask per task), or pass --replay"
    )


def live_warning(factory: LocalFactory) -> str:
    """What a run with the real model may cost, said before it starts."""
    caps = [factory.factories[t.spec.factory_ref].spec.spec for t in factory.tasks.values()
            if t.spec.factory_ref in factory.factories]  # fmt: skip
    models = sorted({spec.agents.model for spec in caps})
    most = sum(spec.budget.max_cost_usd_per_task for spec in caps)
    return (
        f"Agents call the Anthropic API ({', '.join(models)}) with your ANTHROPIC_API_KEY:"
        f" {len(caps)} task(s), up to ${most:,.2f} in all by budget.maxCostUSDPerTask."
        " Ctrl-C stops the run, and it resumes where it stopped."
    )


def _settings(state: Path) -> dict[str, object]:
    path = state / "run.json"
    if not path.exists():
        raise UsageError(f"no saved run in {state}; start one with: agentfactory local DIR")
    settings: dict[str, object] = json.loads(path.read_text())
    return settings


def _fresh(state: Path) -> None:
    """Empty *state*, keeping the lock this process holds."""
    for child in state.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run_local(words: list[str], *, state: Path, by: str | None = None, fresh: bool = False,
              replay: bool = False, live: bool = False) -> int:  # fmt: skip
    """The command; what goes wrong in the input or the environment is a message, not a
    traceback."""
    action = words[0] if words and words[0] in ACTIONS else None
    try:
        if action and len(words) != 2:
            raise UsageError(f"usage: agentfactory local {action} TASK [--state DIR]")
        if not action:
            missing = [word for word in words if not Path(word).exists()]
            if missing:
                raise UsageError(
                    f"{', '.join(missing)}: no such file or directory; name the directories or"
                    " YAML files with your FactorySpecs and AgentTasks (for example examples/)"
                )
        with holding(state):
            return _run(words, action, state=state, by=by, fresh=fresh, replay=replay,
                        live=live)  # fmt: skip
    except (UsageError, LoadError, StateLockedError) as exc:
        sys.stderr.write(f"agentfactory local: {exc}\n")
        return EXIT_USAGE


def _run(words: list[str], action: str | None, *, state: Path, by: str | None, fresh: bool,
         replay: bool, live: bool) -> int:  # fmt: skip
    if action:
        settings = _settings(state)
        paths = [str(p) for p in settings["paths"]]  # type: ignore[attr-defined]
        agents = Agents(Path(str(settings["replay"])) if settings.get("replay") else None, "")
    else:
        if fresh:
            _fresh(state)
        paths = [str(Path(p).resolve()) for p in words]
        agents = choose_agents(paths, replay=replay, live=live,
                               key=bool(os.environ.get("ANTHROPIC_API_KEY")))  # fmt: skip
        (state / "run.json").write_text(
            json.dumps({"paths": paths, "replay": str(agents.replay or "")})
        )
    factory = LocalFactory(paths=paths, state_dir=state, replay_dir=agents.replay,
                           terminal=sys.stdout.isatty())  # fmt: skip
    if not action:
        factory.out(agents.why or live_warning(factory))
    try:
        if action:
            decision = factory.human(words[1], action, by)
            if decision.ignored:
                return EXIT_IGNORED
        return factory.run()
    except KeyboardInterrupt:
        again = shlex.join(["agentfactory", "local", *paths, "--state", str(state)])
        sys.stderr.write(f"\ninterrupted; the run resumes where it stopped with: {again}\n")
        return EXIT_INTERRUPTED
