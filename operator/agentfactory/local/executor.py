"""LocalExecutor: one stage attempt as a local process, sandboxed with bubblewrap if present.

Each attempt gets a fresh clone of the remote at the attempt's commit, a read-only input
directory (the handoff contract, the constitution) and an output directory; it runs
`agentfactory agent` there (the same entrypoint as the agent image) with the stage's deadline
and resource limits, and the result file is read back. A sandbox CI run executes the
factory's checks the same way on the exact head. Attempts run in a thread pool, side by side,
while the driver's loop goes on; a stopping run kills their sandboxes.

With bubblewrap: the system is mounted read-only, only the workspace, the output directory and
a private /tmp are writable, the operator's state directory and well-known credential files
are hidden, the environment is cleared down to what the agent needs, and the process dies with
its parent. Without bubblewrap the process runs unconfined, and the executor says so once.
The network is shared in both cases: the agent must reach the model API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agentfactory.core.executors import Absent, Outcome, Running
from agentfactory.core.handoff import (
    CHECK_LIST,
    OUTPUT_CAP,
    AgentResult,
    CheckReport,
    CheckRun,
    HandoffContract,
)
from agentfactory.core.heartbeat import Heartbeat

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentfactory.core.common import Check
    from agentfactory.core.executors import Attempt, Launch, Observed
    from agentfactory.core.factory import RoleOverride
    from agentfactory.core.forges import Forge
    from agentfactory.gateway.running import LoopbackGateway
    from agentfactory.local.progress import Progress

#: How long one side of break/fix (the tests on the base, or on the head) may run.
PROOF_SECONDS = 600
#: Environment passed into a sandbox; everything else is dropped.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PYTHONPATH")
#: Run argv[2:] with the address space (argv[1] bytes), open files and file size limited.
_LIMITED = (
    "import os, resource, sys\n"
    "memory = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (memory, memory))\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 30, 2 << 30))\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
#: Credential files and directories hidden from sandboxes (relative to $HOME).
_HIDDEN = (
    ".ssh",
    ".aws",
    ".config/gcloud",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".gnupg",
    ".pypirc",
)


#: The directory holding the `agentfactory` package (`operator/`).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def attempt_pool(workers: int) -> ThreadPoolExecutor:
    """Threads to run *workers* attempts side by side (each waits on its sandbox process)."""
    return ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="attempt")


def runtime_paths() -> list[str]:
    """What a sandbox needs to run `python -m agentfactory`: the interpreter and the package."""
    candidates = {sys.prefix, sys.base_prefix, str(Path(sys.executable).parent), str(PACKAGE_ROOT)}
    return sorted(p for p in candidates if Path(p).exists())


@dataclass
class LocalExecutor:
    """Runs stage attempts as processes under the state directory."""

    forge: Forge
    state_dir: Path
    timeout_seconds: float = 1800
    memory_bytes: int = 4 << 30
    replay_dir: Path | None = None
    say: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))  # noqa: T201
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))
    constitution: str | None = None
    """The factory's constitution, given to every agent."""
    progress: Progress | None = None
    """Where the running stages and their agents' heartbeats are shown."""
    gateway: LoopbackGateway | None = None
    """The model gateway agents reach the model through (None: they get the key itself, as
    with replays, which call no model)."""
    pool: ThreadPoolExecutor = field(default_factory=lambda: attempt_pool(1))
    """Where attempts run, side by side up to its workers (shared by a run's factories)."""
    _warned: bool = field(default=False, init=False)
    _attempts: dict[str, Future[Outcome]] = field(default_factory=dict, init=False)
    """Attempts run by this process, by name (one killed with the process runs again)."""
    _processes: set[subprocess.Popen[bytes]] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    # -- the Executor protocol: an attempt runs in the pool; the loop goes on meanwhile ----

    async def launch(self, launch: Launch) -> None:
        self._attempts[launch.attempt.pod] = self.pool.submit(self._run_attempt, launch)

    async def observe(self, attempt: Attempt) -> Observed:
        future = self._attempts.get(attempt.pod)
        if future is None:
            return Absent()
        if not future.done():
            return Running()
        if future.exception() is not None:  # said once; the next pass runs it again
            del self._attempts[attempt.pod]
        return future.result()

    async def remove(self, attempt: Attempt, *, keep: bool = False) -> None:
        """Forget the attempt; its directory stays under the state directory as the record
        (a rerun of the same attempt starts it clean). One still running is left to end on
        its own deadline, its outcome unread."""
        del keep
        self._attempts.pop(attempt.pod, None)

    def running(self) -> list[Future[Outcome]]:
        """The attempts that have not ended yet."""
        return [future for future in self._attempts.values() if not future.done()]

    def stop(self) -> None:
        """Kill every running sandbox (the run is stopping; a rerun starts them again)."""
        with self._lock:
            for proc in self._processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def _run_attempt(self, launch: Launch) -> Outcome:
        pod = launch.attempt.pod
        label = launch.contract.role.value if launch.contract is not None else "CI"
        if self.progress is not None:
            self.progress.started(pod, label)
        try:
            return self._attempt(launch)
        finally:
            if self.progress is not None:
                self.progress.ended(pod)

    def _attempt(self, launch: Launch) -> Outcome:
        pod = launch.attempt.pod
        if launch.contract is None:
            checks = launch.checks
            self.say(f"          running CI {pod} on {launch.ref[:12]} ({len(checks)} checks)")
            within = launch.factory.ci.timeout_seconds
            report = self.run_checks(pod=pod, ref=launch.ref, checks=checks, within=within,
                                     prove=launch.prove)  # fmt: skip
            return Outcome(report.model_dump_json(by_alias=True))
        mode = "replay" if self.replay_dir else launch.contract.model
        self.say(f"          running {launch.contract.role.value} {pod} ({mode})")
        settings = launch.factory.agents.roles.of(launch.contract.role.value)
        if self.gateway is None or self.replay_dir is not None:
            return self.run_agent(pod=pod, contract=launch.contract, ref=launch.ref,
                                  constitution=self.constitution, settings=settings)  # fmt: skip
        # The sandbox gets a token for this attempt and the gateway's address, never the key;
        # the attempt is charged what the gateway counted.
        token = self.gateway.grant(launch.attempt, launch.factory, launch.contract.limits)
        model = {"ANTHROPIC_BASE_URL": self.gateway.start(), "ANTHROPIC_API_KEY": token}
        try:
            outcome = self.run_agent(pod=pod, contract=launch.contract, ref=launch.ref,
                                     constitution=self.constitution, settings=settings,
                                     model_env=model)  # fmt: skip
        finally:
            spent = self.gateway.gateway.ledger.close(f"{launch.attempt.namespace}/{pod}")
        return replace(outcome, metered=spent.usage.model_dump(by_alias=True))

    @property
    def confined(self) -> bool:
        return self.bwrap is not None

    def _warn_unconfined(self) -> None:
        if not self.confined and not self._warned:
            self._warned = True
            self.say(
                "WARNING: bubblewrap (bwrap) is not installed: agents run UNCONFINED, with your"
                " user's access to this machine. Install it (apt-get install bubblewrap)."
            )

    def _fresh_attempt(self, pod: str, ref: str) -> Path:
        """An empty attempt directory with a fresh clone at *ref* in `workspace/`."""
        self._warn_unconfined()
        path = self.state_dir / "attempts" / pod
        if path.exists():
            shutil.rmtree(path)  # a rerun after a crash starts clean
        (path / "input").mkdir(parents=True)
        (path / "output").mkdir()
        self.forge.checkout_into(path / "workspace", ref)
        return path

    def run_agent(
        self, *, pod: str, contract: HandoffContract, ref: str, constitution: str | None,
        settings: RoleOverride | None = None, model_env: dict[str, str] | None = None,
    ) -> Outcome:  # fmt: skip
        """Run one agent attempt on a fresh clone at *ref*, with the role's engine: the
        builtin runner, Claude Code, or an agent image's command (run on this machine, which
        has no image runtime), followed by `agentfactory collect` as in a pod."""
        base = self._fresh_attempt(pod, ref)
        workspace = base / "workspace"
        (base / "input" / "contract.json").write_text(contract.model_dump_json(by_alias=True))
        if constitution:
            (base / "input" / "constitution.md").write_text(constitution)
        output = base / "output" / "result.json"
        io = ["--role", contract.role.value, "--input", str(base / "input"),
              "--workspace", str(workspace), "--output", str(output)]  # fmt: skip
        engine = settings.engine if settings is not None else "builtin"
        command = [sys.executable, "-m", "agentfactory", "agent", *io]
        deadline = min(self.timeout_seconds, contract.limits.deadline_seconds + 60)
        if engine == "claude-code":
            command += ["--engine", "claude-code"]
        if engine == "image" and settings is not None:
            return self._run_image(base, settings.command, io, deadline, model_env)
        if self.replay_dir is not None:
            recorded = self.replay_dir / f"{pod}.json"
            if not recorded.exists():
                return Outcome(None, f"no recorded replay {recorded.name}", "error")
            # Inputs live in the read-only input directory, the only place a sandbox sees them.
            shutil.copyfile(recorded, base / "input" / "replay.json")
            command += ["--replay", str(base / "input" / "replay.json")]
        code, log = self._run(command, workspace=workspace, base=base, timeout=deadline,
                              model_env=model_env)  # fmt: skip
        (base / "agent.log").write_text(log)
        if (ended := _killed(code, deadline, log)) is not None:
            return ended
        return _read_result(output, log)

    def _run_image(
        self, base: Path, command: list[str] | None, io: list[str], deadline: float,
        model_env: dict[str, str] | None,
    ) -> Outcome:  # fmt: skip
        """An agent image's command, then the factory's step that reads what it wrote."""
        if command is None:
            said = ("engine: image needs a command to run locally (there is no image runtime"
                    " here to find its entrypoint)")  # fmt: skip
            return Outcome(None, said, "setup")
        paths = dict(zip(io[0::2], io[1::2], strict=True))
        contract = {"AGENTFACTORY_ROLE": paths["--role"], "AGENTFACTORY_INPUT": paths["--input"],
                    "AGENTFACTORY_WORKSPACE": paths["--workspace"],
                    "AGENTFACTORY_OUTPUT": paths["--output"]}  # fmt: skip
        workspace = Path(paths["--workspace"])
        code, log = self._run(list(command), workspace=workspace, base=base, timeout=deadline,
                              extra_env=contract, model_env=model_env)  # fmt: skip
        (base / "engine.log").write_text(log)
        if (ended := _killed(code, deadline, log)) is not None:
            return ended
        if code != 0:
            return Outcome(None, f"the agent image exited {code} without handing back a"
                                 f" result: {log[-800:]}", "error")  # fmt: skip
        collect = [sys.executable, "-m", "agentfactory", "collect", *io]
        code, log = self._run(collect, workspace=workspace, base=base, timeout=deadline,
                              model_access=False)  # fmt: skip
        (base / "agent.log").write_text(log)
        return _killed(code, deadline, log) or _read_result(Path(paths["--output"]), log)

    def run_checks(
        self, *, pod: str, ref: str, checks: list[Check], within: float = 86400,
        prove: dict[str, Any] | None = None,
    ) -> CheckReport:  # fmt: skip
        """Run the factory's checks on a fresh clone at exactly *ref* (sandbox CI), through
        `agentfactory checks`, the CI pod's own entrypoint, stopped after *within* seconds
        (`ci.timeoutSeconds`); with *prove*, break/fix after them too."""
        base = self._fresh_attempt(pod, ref)
        (base / "input" / "checks.json").write_bytes(CHECK_LIST.dump_json(checks, by_alias=True))
        if prove is not None:
            (base / "input" / "prove.json").write_text(json.dumps(prove))
        output = base / "output" / "result.json"
        command = [sys.executable, "-m", "agentfactory", "checks", "--input", str(base / "input"),
                   "--workspace", str(base / "workspace"), "--output", str(output)]  # fmt: skip
        deadline = min(sum(c.timeout_seconds for c in checks) + 60, within)
        if prove is not None:  # the tests run twice more (base and head), each side bounded
            deadline = min(deadline + 2 * PROOF_SECONDS, within)
        _, log = self._run(command, workspace=base / "workspace", base=base, timeout=deadline,
                           model_access=False)  # fmt: skip
        (base / "checks.log").write_text(log)
        try:
            report = CheckReport.model_validate_json(output.read_text())
        except (OSError, ValidationError):  # the run itself broke: every check counts as failed
            report = CheckReport(checks=[
                CheckRun(name=c.name, command=c.command, exit_code=None, status="failed",
                         output_tail=log[-OUTPUT_CAP:]) for c in checks])  # fmt: skip
        (base / "checks.json").write_text(report.model_dump_json(by_alias=True, indent=2))
        return report

    def _run(
        self, command: list[str], *, workspace: Path, base: Path, timeout: float,
        model_access: bool = True, extra_env: dict[str, str] | None = None,
        model_env: dict[str, str] | None = None,
    ) -> tuple[int | None, str]:  # fmt: skip
        """Run *command* confined; *model_access*: with the model API's address and
        credential (agents only: the checks run the agents' code): *model_env* (the gateway's
        address and an attempt token) when given, else this process's own."""
        own_model = model_access and model_env is None
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ
               and (own_model or not k.startswith("ANTHROPIC_"))}  # fmt: skip
        if model_access and model_env is not None:
            env.update(model_env)
        env.update(HOME=str(base / "home"), TMPDIR="/tmp", PYTHONDONTWRITEBYTECODE="1")  # noqa: S108 - private tmpfs
        env.update(extra_env or {})
        (base / "home").mkdir(exist_ok=True)
        # Let the agent import this package even when it is not installed system-wide.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p
        )
        # The limits are set by a small interpreter that then becomes the sandbox, not by a
        # preexec_fn, which may deadlock a process whose other threads (the other attempts,
        # the gateway) hold a lock when it forks.
        limits = [sys.executable, "-I", "-c", _LIMITED, str(self.memory_bytes)]
        argv = [*limits, *self._confine(command, workspace=workspace, base=base)]
        proc = subprocess.Popen(  # noqa: S603 - argv built here
            argv,
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self._lock:
            self._processes.add(proc)
        lines: list[str] = []

        def read() -> None:  # the log as it comes, so that heartbeats show while it runs
            for raw in proc.stdout or ():
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                if self.progress is not None and (beat := Heartbeat.parse(line)) is not None:
                    self.progress.beat(base.name, beat)

        reader = threading.Thread(target=read, name=f"log-{base.name}", daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        # The sandbox's processes are gone with it (--die-with-parent); a pipe a stray one
        # still held would not hold up the run.
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        with self._lock:
            self._processes.discard(proc)
        return code, "".join(lines)

    def _confine(self, command: list[str], *, workspace: Path, base: Path) -> list[str]:
        """bubblewrap's argv around *command*. The environment is the process's own, never
        `--setenv` (a command line, which any process can read), and *command* runs as PID 1
        (no bwrap reaper holding that command line). Files *command* names (an agent image's
        script) are bound read-only where the private /tmp would hide them."""
        if self.bwrap is None:
            return command
        argv = [
            self.bwrap,
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",  # noqa: S108 - a private tmpfs, not the host's /tmp
            "--tmpfs",
            str(self.state_dir.resolve()),
        ]
        home = Path(os.environ.get("HOME", "/root"))
        for hidden in _HIDDEN:
            path = home / hidden
            if path.is_dir():
                argv += ["--tmpfs", str(path)]
            elif path.exists():
                argv += ["--ro-bind", "/dev/null", str(path)]
        # The interpreter and this package may live under /tmp (a fresh clone's venv), which
        # the private tmpfs above hides: bind them back, read-only.
        for runtime in runtime_paths():
            argv += ["--ro-bind", runtime, runtime]
        for word in command[1:]:
            named = Path(word)
            if named.is_absolute() and named.is_file() and named.parts[1:2] == ("tmp",):
                argv += ["--ro-bind", str(named.parent), str(named.parent)]
        argv += [
            "--bind",
            str(workspace),
            str(workspace),
            "--ro-bind",
            str(base / "input"),
            str(base / "input"),
            "--bind",
            str(base / "output"),
            str(base / "output"),
            "--bind",
            str(base / "home"),
            str(base / "home"),
            "--unshare-user-try",
            "--unshare-pid",
            "--as-pid-1",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--new-session",
        ]
        return [*argv, "--chdir", str(workspace), *command]


def _killed(code: int | None, deadline: float, log: str) -> Outcome | None:
    """Why a sandbox's process was killed (its deadline, memory), or None."""
    if code is None:
        return Outcome(None, f"killed after {deadline:g}s", "timeout")
    if code == -signal.SIGKILL:
        return Outcome(None, f"killed (out of memory?): {log[-500:]}", "oom-killed")
    return None


def _read_result(output: Path, log: str) -> Outcome:
    """The result a session wrote to *output*, as the pod contract says."""
    try:
        result = AgentResult.model_validate_json(output.read_text())
    except (OSError, ValidationError) as exc:
        return Outcome(None, f"no valid result ({exc}): {log[-800:]}", "malformed-result")
    return Outcome(result.model_dump_json(by_alias=True))
