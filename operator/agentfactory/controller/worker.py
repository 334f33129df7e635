"""The AgentTask reconciler: one worker per namespace moves its tasks through the pipeline.

Each pass is level-triggered, like the local driver's step: human-action annotations,
then the scheduler's observations (dependencies, admission, the merge slot), then for every
active task the work its status calls for: launch the stage attempt's pod, read the
finished pod's result, or merge. Every observation goes through the core's `decide`; a
transition is one status PATCH and one Event. kopf's watches wake the worker (a task, pod or
factory changed); a periodic resync catches what no event announces (an overdue pod).

One worker per namespace is the single writer of its tasks' statuses, so admission and the
merge slot are decided on one consistent view, and no two passes race each other.
Work is derived from the status alone (pods by deterministic name), so a restarted operator
resumes where the last one stopped: an existing pod is found, not launched again; a merge
that landed is found by the forge, not repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from agentfactory import API_VERSION
from agentfactory.controller.leadership import Leadership
from agentfactory.controller.notify import NotifyError, post_notification
from agentfactory.core.actions import CancelStage, Notify, PushBranch
from agentfactory.core.explain import explain
from agentfactory.core.factory import FactorySpecSpec
from agentfactory.core.factory_status import PROGRESS_FIELDS, PROGRESS_KEYS, progress
from agentfactory.core.github import ci_verdict, pr_comments, pull_request_body
from agentfactory.core.handoff import AgentResult, CheckReport
from agentfactory.core.intake import TAKEN_LABEL, intake_problem, task_from_issue
from agentfactory.core.mergepatch import merge_patch
from agentfactory.core.notification import notification
from agentfactory.core.observations import (
    CIFinished,
    FailureReason,
    HumanAction,
    Observation,
    PullRequestOpened,
    SpecInvalid,
    StageFailed,
)
from agentfactory.core.phases import Phase, Stage
from agentfactory.core.pipeline import CHANGEABLE, Decision, TaskView, decide
from agentfactory.core.scheduler import TaskInfo, schedule
from agentfactory.core.secret_optin import refusal
from agentfactory.core.task import AgentTaskSpec, AgentTaskStatus, Scope, Usage
from agentfactory.core.work import AwaitChecks, Merge, RunAttempt, work_for
from agentfactory.forge.build import build_forge
from agentfactory.forge.git import ForgeError
from agentfactory.forge.github import GitHubError, GitHubForge
from agentfactory.kube.client import Kube, KubeError, SecretRefusedError, path_of
from agentfactory.kube.executor import ForeignObjectError, KubernetesExecutor
from agentfactory.kube.pods import is_done, overdue
from agentfactory.manifests.agents import (
    MANAGED,
    Attempt,
    ManifestError,
    agent_network_policy,
    agent_pod,
    input_files,
    network_policy_name,
    not_made_for,
)
from agentfactory.stages import (
    NO_FACTORY,
    StageOutcome,
    agent_inputs,
    agent_observation,
    change_title,
    ci_checks,
    ci_observation,
    merge_observation,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from agentfactory.controller.metrics import Metrics
    from agentfactory.controller.view import View
    from agentfactory.forge.git import GitForge
    from agentfactory.kube.pods import PodOutcome

log = logging.getLogger("agentfactory.worker")
#: Human actions: annotation → the core's action name.
HUMAN: dict[str, Literal["approve", "retry", "cancel"]] = {
    "agentfactory.dev/approved-by": "approve",
    "agentfactory.dev/retry": "retry",
    "agentfactory.dev/cancel": "cancel",
}
KEPT = "agentfactory.dev/kept"
BASE = "agentfactory.dev/base"
ENDED = (Phase.MERGED, Phase.CANCELLED)
#: Phases whose PR is closed for good (or never needed one).
CLOSED = (*ENDED, Phase.FAILED)


CONFLICT_RETRIES = 3
#: How long a credentials Secret read stays good (rotation is picked up within this).
SECRET_SECONDS = 30


def _status_body(raw: dict[str, Any], new: AgentTaskStatus) -> dict[str, Any]:
    """A merge patch that makes *raw*'s status equal *new*, applied only if *raw* is still
    the task's current version. It records the spec generation it was decided from."""
    generation = (raw.get("metadata") or {}).get("generation")
    if isinstance(generation, int):
        new = new.model_copy(update={"observed_generation": generation})
    data = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    body: dict[str, Any] = {"status": merge_patch(raw.get("status") or {}, data)}
    version = (raw.get("metadata") or {}).get("resourceVersion")
    if version:
        body["metadata"] = {"resourceVersion": version}
    return body


@dataclass
class Task:
    """One AgentTask as the worker reads it."""

    raw: dict[str, Any]
    spec: AgentTaskSpec | None
    status: AgentTaskStatus
    problem: str | None = None
    """Why the spec does not validate."""
    unreadable: str | None = None
    """Why the status does not validate (the operator then leaves the task alone)."""

    @property
    def name(self) -> str:
        return str(self.raw["metadata"]["name"])

    @property
    def factory(self) -> str:
        return str((self.raw.get("spec") or {}).get("factoryRef", ""))


@dataclass
class Worker:
    """Moves the tasks of one namespace."""

    namespace: str
    kube: Kube
    view: View
    workdir: Path
    metrics: Metrics | None = None
    resync_seconds: float = 30
    github_poll_seconds: float = 15
    """How often a task's PR reviews and checks are read at most (passes come on every watch
    event; GitHub's own changes arrive only by asking)."""
    unschedulable_seconds: float = 600
    """How long a stage pod the scheduler cannot place waits before its attempt fails: long
    enough for a cluster autoscaler to add a node, far shorter than most stage deadlines."""
    leadership: Leadership = field(default_factory=Leadership.standalone)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    executor: KubernetesExecutor = field(init=False)
    _forges: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], GitForge]] = field(
        default_factory=dict
    )
    _notifying: set[asyncio.Task[None]] = field(default_factory=set)
    """Webhook deliveries under way (held so that they are not collected mid-flight)."""
    _confining: dict[str, float] = field(default_factory=dict)
    """NetworkPolicies by name: when last seen to exist."""
    _inputs_removed: set[str] = field(default_factory=set)
    """UIDs of ended tasks whose input ConfigMaps were deleted."""
    _secrets: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = field(
        default_factory=dict
    )
    """Secrets by (name, factory): (when read, decoded data; None: not the factory's to use)."""
    _reported: set[tuple[str, str]] = field(default_factory=set)
    """(task, resourceVersion) pairs whose unreadable status was reported."""
    _parsed: dict[str, tuple[str, Task]] = field(default_factory=dict)
    """Tasks as last parsed, with the resourceVersion they were parsed at."""
    _polled: dict[tuple[str, str], float] = field(default_factory=dict)
    """(task or factory, what) -> when GitHub was last asked about it."""
    _told: set[tuple[str, int, int]] = field(default_factory=set)
    """(factory, issue, hash of its text): issues told why they are not a task yet."""

    def __post_init__(self) -> None:
        self.executor = KubernetesExecutor(self.kube)

    async def run(self) -> None:
        """Pass after pass; between passes, wait for a wake-up or the resync period. While
        another replica leads, no pass runs (see `leadership`)."""
        leading = False
        while not self.stopping.is_set():
            self.wake.clear()
            moved = False
            try:
                if await self.leadership.active():
                    if not leading:  # taking over: our view stood still while we waited
                        await self.refresh()
                        leading = True
                    moved = await self.step()
                else:
                    leading = False
            except Exception:  # the next pass retries; the operator must not stop
                log.exception("pass over namespace %s failed; retrying", self.namespace)
            if not moved:
                period = self.resync_seconds if leading else self.leadership.every
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self.wake.wait()

    def stop(self) -> None:
        """Finish the pass under way (its writes are whole), then end `run`."""
        self.stopping.set()
        self.wake.set()

    async def refresh(self) -> None:
        """Read the namespace's tasks, factories and stage pods from the API into the view."""
        collections = {
            "agenttasks": path_of(API_VERSION, "agenttasks", self.namespace),
            "factoryspecs": path_of(API_VERSION, "factoryspecs", self.namespace),
            "pods": path_of("v1", "pods", self.namespace),
        }
        for kind, path in collections.items():
            labels = MANAGED if kind == "pods" else None
            self.view.replace(kind, self.namespace, await self.kube.list(path, labels))

    # -- reading ---------------------------------------------------------------------------

    def _task(self, raw: dict[str, Any]) -> Task:
        """The task *raw* holds, parsed once per resourceVersion (a pass reads every task)."""
        meta = raw.get("metadata") or {}
        version = str(meta.get("resourceVersion") or "")
        cached = self._parsed.get(meta.get("name", ""))
        if version and cached is not None and cached[0] == version:
            return cached[1]
        task = self._parse(raw)
        if version:
            self._parsed[task.name] = (version, task)
        return task

    @staticmethod
    def _parse(raw: dict[str, Any]) -> Task:
        unreadable = None
        try:
            status = AgentTaskStatus.model_validate(raw.get("status") or {})
        except ValidationError as exc:
            # Never rebuilt from the start: that would run a task's stages (or more) again.
            status = AgentTaskStatus()
            unreadable = "; ".join(explain(exc, AgentTaskStatus, "status."))
        try:
            spec = AgentTaskSpec.model_validate(raw.get("spec") or {})
        except ValidationError as exc:
            problems = "; ".join(explain(exc, AgentTaskSpec, "spec."))
            return Task(raw, None, status, problems, unreadable)
        return Task(raw, spec, status, unreadable=unreadable)

    async def _unreadable(self, task: Task) -> None:
        """Say once per version of the task that its status cannot be read, and touch
        nothing: a person fixes the status or recreates the task."""
        version = str(task.raw["metadata"].get("resourceVersion", ""))
        if (task.name, version) in self._reported:
            return
        self._reported.add((task.name, version))
        message = (f"the status does not validate ({task.unreadable}); the operator leaves this"
                   " task alone: fix it (kubectl patch --subresource=status) or delete and"
                   " recreate the task")[:1000]  # fmt: skip
        log.warning("%s/%s: %s", self.namespace, task.name, message)
        await self._event(task.raw, "Warning", "StatusUnreadable", message)

    def _factories(self) -> dict[str, FactorySpecSpec]:
        out = {}
        for raw in self.view.in_namespace("factoryspecs", self.namespace):
            with contextlib.suppress(ValidationError):  # its own status says what is wrong
                out[raw["metadata"]["name"]] = FactorySpecSpec.model_validate(raw.get("spec"))
        return out

    async def _forge(self, name: str, spec: FactorySpecSpec) -> GitForge:
        """The factory's forge, made again only when its repository or credentials change."""
        secret_name = spec.repository.credentials_secret
        field = "spec.repository.credentials"
        secret = await self._secret(secret_name, name, field) if secret_name else {}
        key = (spec.repository.model_dump_json(), tuple(sorted(secret.items())))
        if name not in self._forges or self._forges[name][0] != key:
            forge = build_forge(spec.repository, self.workdir / self.namespace / name, secret)
            self._forges[name] = (key, forge)
        return self._forges[name][1]

    async def _github(self, name: str, factory: FactorySpecSpec | None) -> GitHubForge | None:
        """Factory *name*'s forge when it is GitHub (where PRs, checks, reviews and issues
        live)."""
        if factory is None or factory.repository.forge != "github":
            return None
        forge = await self._forge(name, factory)
        return forge if isinstance(forge, GitHubForge) else None

    async def _secret(self, name: str, factory: str, field: str) -> dict[str, str]:
        """The data of the Secret *name* that *factory*'s *field* names, read at most once per
        SECRET_SECONDS: the forge is asked for on every launch, collection, CI check and PR
        update, and a rotated (or newly labelled) Secret only needs to be picked up soon.
        SecretRefusedError, saying what to do, when it does not let the factory use it."""
        read = self._secrets.get((name, factory))
        if read is None or time.monotonic() - read[0] >= SECRET_SECONDS:
            try:
                data = await self.kube.secret_data(self.namespace, name, factory) or {}
            except SecretRefusedError:
                data = None
            read = self._secrets[name, factory] = (time.monotonic(), data)
        if read[1] is None:
            raise SecretRefusedError(refusal(name, factory, field))
        return read[1]

    # -- one pass --------------------------------------------------------------------------

    async def step(self) -> bool:
        """One pass; True when some task moved (so another pass follows at once)."""
        factories = self._factories()
        for name, factory in factories.items():
            try:
                await self._intake(name, factory)
            except Exception as exc:  # the tasks move on; intake tries again next poll
                log.warning("%s/%s: issue intake failed: %s", self.namespace, name, exc)
        raws = self.view.in_namespace("agenttasks", self.namespace)
        tasks = {t.name: t for t in map(self._task, raws)}
        for task in [t for t in tasks.values() if t.unreadable]:
            del tasks[task.name]
            await self._unreadable(task)
        moved = False
        for task in tasks.values():
            if task.spec is None and task.status.phase not in (Phase.FAILED, Phase.CANCELLED):
                invalid = SpecInvalid(message=task.problem or "")
                moved |= not (await self.apply(task, None, invalid)).ignored
            elif task.spec is not None and task.factory in factories:
                moved |= await self._annotations(task, factories[task.factory])
        if moved:
            return True
        infos = [self._info(t, t.spec) for t in tasks.values() if t.spec and t.factory in factories]
        result = schedule(factories, infos)
        for name, observation in result.observations:
            task = self._task(self.view.get("agenttasks", self.namespace, name) or {})
            moved |= not (await self.apply(task, factories[task.factory], observation)).ignored
        if moved:
            return True
        await self._show_waiting(result.waiting)
        for task in tasks.values():
            if task.spec is not None and task.factory in factories:
                try:
                    factory = factories[task.factory]
                    on_github = await self._on_github(task, task.spec, factory)
                    moved |= on_github or await self.work(task, factory)
                except Exception as exc:  # one task's trouble must not stop the others
                    log.exception("%s/%s: its stage could not advance; retrying", self.namespace,
                                  task.name)  # fmt: skip
                    await self._stuck(self._current(task), exc)
        await self._clean_up(factories)
        await self._forget_deleted(factories)
        await self._report(tasks.values())
        return moved

    async def _show_waiting(self, waiting: dict[str, str]) -> None:
        """Say in a waiting task's status what it waits for (a status write, not a transition:
        no Event), so `kubectl get -o wide` answers "why is it not running?"."""
        for name, message in waiting.items():
            task = self._task(self.view.get("agenttasks", self.namespace, name) or {})
            if not task.raw.get("status") or task.status.message != message:
                await self._say(task, message)

    async def _stuck(self, task: Task, exc: Exception) -> None:
        """Tell the task's readers why its stage does not advance (an unreachable repository,
        an API error): in its status message and one Warning Event per new reason. The
        operator keeps retrying; the phase stays, since nothing about the task failed."""
        status = task.status
        message = f"{status.stage} #{status.attempt} cannot advance: {exc}"[:1000]
        if status.message != message and (raw := await self._say(task, message)) is not None:
            await self._event(raw, "Warning", "StageStuck", message)

    async def _say(self, task: Task, message: str) -> dict[str, Any] | None:
        """Write *message* into the task's status, nothing else (None when the task changed
        meanwhile: the next pass says it again)."""
        path = path_of(API_VERSION, "agenttasks", self.namespace, task.name) + "/status"
        status = task.status.model_copy(update={"message": message})
        try:
            raw = await self.kube.patch(path, _status_body(task.raw, status))
        except KubeError:
            return None
        self.view.put("agenttasks", raw)
        return raw

    async def _report(self, tasks: Iterable[Task]) -> None:
        """Keep each factory's task counts and merge queue in its status, written only when
        they changed (the factory handlers own the rest of that status)."""
        by_factory: dict[str, list[TaskInfo]] = {}
        for task in map(self._current, tasks):
            by_factory.setdefault(task.factory, []).append(self._info(task, task.spec))
        for raw in self.view.in_namespace("factoryspecs", self.namespace):
            name = raw["metadata"]["name"]
            current = progress(by_factory.get(name, []))
            fields = current.model_dump(mode="json", by_alias=True, exclude_none=True,
                                        include=PROGRESS_FIELDS)  # fmt: skip
            shown = raw.get("status") or {}
            change = merge_patch({k: shown[k] for k in PROGRESS_KEYS if k in shown}, fields)
            if not change:
                continue
            path = path_of(API_VERSION, "factoryspecs", self.namespace, name) + "/status"
            with contextlib.suppress(KubeError):  # deleted meanwhile: nothing to count
                self.view.put("factoryspecs", await self.kube.patch(path, {"status": change}))

    def _current(self, task: Task) -> Task:
        """*task* as this pass left it (its own writes are in the view)."""
        return self._task(self.view.get("agenttasks", self.namespace, task.name) or task.raw)

    def _info(self, task: Task, spec: AgentTaskSpec | None) -> TaskInfo:
        created = task.raw["metadata"].get("creationTimestamp")
        return TaskInfo(
            name=task.name,
            factory=task.factory,
            phase=task.status.phase,
            depends_on=tuple(spec.depends_on) if spec else (),
            scope=tuple(spec.scope.paths) if spec else (),
            priority=spec.priority if spec else 0,
            created=datetime.fromisoformat(created) if created else None,
            merge_running=task.status.phase == Phase.MERGING and task.status.attempt > 0,
            phase_since=task.status.last_transition_time,
        )

    # -- people ----------------------------------------------------------------------------

    async def _annotations(self, task: Task, factory: FactorySpecSpec) -> bool:
        """Consume each human-action annotation once: remove it (guarded by its value, so a
        newer one set meanwhile survives), then act. A crash between the two loses the
        action rather than doing it twice; the person sees it did not happen and sets it
        again."""
        annotations = task.raw["metadata"].get("annotations") or {}
        for key, action in HUMAN.items():
            if key not in annotations:
                continue
            value = str(annotations[key])
            escaped = key.replace("/", "~1")
            path = path_of(API_VERSION, "agenttasks", self.namespace, task.name)
            try:
                raw = await self.kube.json_patch(path, [
                    {"op": "test", "path": f"/metadata/annotations/{escaped}", "value": value},
                    {"op": "remove", "path": f"/metadata/annotations/{escaped}"},
                ])  # fmt: skip
            except KubeError as exc:
                if exc.status in (404, 409, 422):  # changed meanwhile: the next pass sees it
                    return True
                raise
            self.view.put("agenttasks", raw)
            human = HumanAction(action=action, by=value or "annotation")
            decision = await self.apply(self._task(raw), factory, human)
            if decision.ignored:
                await self._event(task.raw, "Warning", "HumanActionIgnored",
                                  f"{key}={value} was ignored: {decision.ignored}")  # fmt: skip
            return True
        return False

    # -- GitHub: the PR as the shared record -----------------------------------------------------

    async def _on_github(self, task: Task, spec: AgentTaskSpec, factory: FactorySpecSpec) -> bool:
        """On GitHub, a task whose branch is pushed has its PR (opened here when the status
        records none: after the patch is accepted, or after a crash that came between); an
        approving review of the exact head by one of `escalation.approvers` approves a task
        waiting for a person, as the annotation would; and a request for changes on it sends
        the patch back to the implementer with the review. True when the task moved."""
        status = task.status
        if status.phase in CLOSED or not status.branch or not status.head_sha:
            return False
        if (forge := await self._github(task.factory, factory)) is None:
            return False
        if status.pull_request is None:
            await asyncio.to_thread(forge.push_branch, status.branch, status.head_sha)
            title, body = change_title(task.name, spec), pull_request_body(task.name, spec)
            pr = await asyncio.to_thread(forge.ensure_pull_request, status.branch, title, body)
            opened = PullRequestOpened(number=pr.number, url=pr.url)
            return not (await self.apply(task, factory, opened)).ignored
        number, approvers = status.pull_request.number, factory.escalation.approvers
        changeable = status.phase in CHANGEABLE and status.resume_from != Stage.PLAN_REVIEW
        if not (changeable or status.awaits_approval) or not self._due(task.name, "reviews"):
            return False
        said = await asyncio.to_thread(forge.reviews, number, status.head_sha, approvers)
        if changeable and said.changes is not None:
            login, asked = said.changes
            changes = HumanAction(action="request-changes", by=login, feedback=asked)
            return not (await self.apply(task, factory, changes)).ignored
        if not status.awaits_approval or not said.approved:
            return False
        approval = HumanAction(action="approve", by=said.approved[0])
        return not (await self.apply(task, factory, approval)).ignored

    async def _intake(self, name: str, factory: FactorySpecSpec) -> None:
        """Each open issue with the factory's intake label becomes an AgentTask, once: the
        task's name comes from the issue, and the issue is labelled as taken afterwards (a
        crash between the two finds the task on the next poll). An issue that is not a task
        yet is told why, once per version of its text."""
        wanted = factory.intake.github_issues if factory.intake else None
        if wanted is None or not self._due(name, "intake"):
            return
        if (forge := await self._github(name, factory)) is None:
            return
        for issue, labels in await asyncio.to_thread(forge.open_issues, wanted.label):
            if TAKEN_LABEL in labels:
                continue
            doc, problems = task_from_issue(issue, factory=name, namespace=self.namespace)
            if doc is None:
                seen = (name, issue.number, hash(issue.body))
                if seen not in self._told:
                    await asyncio.to_thread(forge.comment, issue.number, "intake",
                                            intake_problem(issue, problems))  # fmt: skip
                    self._told.add(seen)
                continue
            task = doc["metadata"]["name"]
            try:
                self.view.put("agenttasks", await self.kube.create(
                    path_of(API_VERSION, "agenttasks", self.namespace), doc))  # fmt: skip
            except KubeError as exc:
                if exc.status != 409:  # 409: made before a crash; label the issue now
                    raise
            text = (f"agentfactory took this issue as AgentTask `{task}` (namespace"
                    f" `{self.namespace}`): `kubectl get agenttask {task} -n {self.namespace}`."
                    " Its pull request will link back here.")  # fmt: skip
            await asyncio.to_thread(forge.take_issue, issue.number, text)
            raw = self.view.get("factoryspecs", self.namespace, name)
            if raw is not None:
                await self._event(raw, "Normal", "TaskFromIssue",
                                  f"issue #{issue.number} became AgentTask {task}",
                                  about="FactorySpec")  # fmt: skip

    def _due(self, task: str, what: str) -> bool:
        """Whether GitHub may be asked about *what* of *task* again (see github_poll_seconds)."""
        now, last = time.monotonic(), self._polled.get((task, what))
        if last is not None and now - last < self.github_poll_seconds:
            return False
        self._polled[(task, what)] = now
        return True

    # -- applying decisions --------------------------------------------------------------------

    async def apply(
        self, task: Task, factory: FactorySpecSpec | None, observation: Observation
    ) -> Decision:
        """Decide, write the status once, post an Event per transition, perform the actions
        (nothing of that when the core ignored the observation).

        The status write is conditional on the resourceVersion the decision was made from.
        When the task changed meanwhile (another writer, a view behind the API), the write is
        refused, and the observation is decided again on the task as it now is: the core
        ignores what no longer applies, so nothing is done twice."""
        path = path_of(API_VERSION, "agenttasks", self.namespace, task.name)
        for _ in range(CONFLICT_RETRIES):
            decision = self._decide(task, factory, observation)
            if decision.ignored:
                log.info("%s/%s: %s ignored: %s", self.namespace, task.name, observation.kind,
                         decision.ignored)  # fmt: skip
                return decision
            body = _status_body(task.raw, decision.status)
            try:
                raw = await self.kube.patch(f"{path}/status", body)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                fresh = await self.kube.get(path)
                if fresh is None:
                    return Decision(task.status, ignored="the task was deleted")
                self.view.put("agenttasks", fresh)
                task = self._task(fresh)
                continue
            self.view.put("agenttasks", raw)
            warned = await self._record(task, decision)
            await self._perform(raw, task, factory, decision, warned)
            if decision.transitions and factory is not None:
                self._call_a_person(raw, task, factory, decision.status)
            if decision.transitions or isinstance(observation, PullRequestOpened):
                await self._publish(task, factory, decision.status)
            return decision
        return Decision(task.status, ignored=f"the task kept changing ({CONFLICT_RETRIES} tries)")

    def _decide(
        self, task: Task, factory: FactorySpecSpec | None, observation: Observation
    ) -> Decision:
        # A spec that does not validate can only be failed, which reads the status alone.
        spec = task.spec or AgentTaskSpec.model_construct(
            factory_ref=task.factory, goal="-", acceptance_criteria=[], scope=Scope(paths=["**"])
        )
        view = TaskView(task.name, spec, task.status)
        return decide(view, factory or NO_FACTORY, observation, now=datetime.now(UTC))

    async def _perform(
        self, raw: dict[str, Any], task: Task, factory: FactorySpecSpec | None,
        decision: Decision, warned: set[str],
    ) -> None:  # fmt: skip
        """Carry out the decision's actions; *warned*: the reasons its transitions already
        posted as Warnings (a notification saying the same again would be noise)."""
        for action in decision.actions:
            if isinstance(action, PushBranch) and factory is not None:
                forge = await self._forge(task.factory, factory)
                await asyncio.to_thread(forge.push_branch, action.branch, action.head_sha)
            elif isinstance(action, Notify) and action.reason not in warned:
                await self._event(raw, "Warning", action.reason, action.message)
            elif isinstance(action, CancelStage):
                await self.executor.remove(self.namespace, action.pod)

    def _call_a_person(
        self, raw: dict[str, Any], task: Task, factory: FactorySpecSpec, status: AgentTaskStatus
    ) -> None:
        """Post the escalation webhook for a task that has just entered a phase a person is
        called to, in the background: a slow receiver must not hold the other tasks up."""
        ref = factory.escalation.notify.webhook_secret_ref
        body = notification(task.name, self.namespace, status)
        if ref is None or body is None:
            return

        async def deliver() -> None:
            field = "spec.escalation.notify.webhookSecretRef"
            try:
                secret = await self._secret(ref.name, task.factory, field)
                url = secret.get(ref.key, "").strip()
                if not url:
                    raise NotifyError(f"{field}: Secret '{ref.name}' has no {ref.key}")
                await post_notification(url, body, secret.get("hmac-key"))
            except (NotifyError, SecretRefusedError, KubeError) as exc:
                log.warning("%s/%s: not notified: %s", self.namespace, task.name, exc)
                await self._event(raw, "Warning", "NotifyFailed", str(exc)[:1000])

        job = asyncio.create_task(deliver(), name=f"notify-{task.name}")
        self._notifying.add(job)
        job.add_done_callback(self._notifying.discard)

    async def _record(self, task: Task, decision: Decision) -> set[str]:
        """Post an Event per transition (and count it); the reasons posted as Warnings."""
        status = decision.status
        warned: set[str] = set()
        for source, trigger, target in decision.transitions:
            where = f" ({status.stage} #{status.attempt})" if status.stage else ""
            message = f"{source} -> {target}{where}: {status.message or trigger}"[:1000]
            kind = "Warning" if target in (Phase.NEEDS_ATTENTION, Phase.FAILED) else "Normal"
            if kind == "Warning":
                warned.add(str(trigger))
            await self._event(task.raw, kind, str(trigger), message)
            log.info("%s/%s %s -> %s (%s): %s", self.namespace, task.name, source, target,
                     trigger, status.message or "")  # fmt: skip
            if self.metrics:
                self.metrics.transitions.labels(str(trigger)).inc()
                escalated = target in (Phase.AWAITING_APPROVAL, Phase.NEEDS_ATTENTION)
                for rule in status.escalation.rules if escalated and status.escalation else []:
                    self.metrics.escalations.labels(rule).inc()
        if self.metrics:
            tokens = status.usage.input_tokens + status.usage.output_tokens
            before = task.status.usage.input_tokens + task.status.usage.output_tokens
            if tokens > before:
                self.metrics.tokens.labels(self.namespace, task.factory).inc(tokens - before)
            if status.usage.cost_usd > task.status.usage.cost_usd:
                self.metrics.cost.labels(self.namespace, task.factory).inc(
                    status.usage.cost_usd - task.status.usage.cost_usd
                )
        return warned

    async def _event(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, about: str = "AgentTask"
    ) -> None:
        """Post an Event of *kind* (Normal, Warning) about *obj*, an object of kind *about*."""
        meta = obj["metadata"]
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        await self.kube.create(path_of("v1", "events", self.namespace), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": about, "name": meta["name"],
                               "namespace": self.namespace, "uid": meta.get("uid", "")},
            "type": kind, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "agentfactory"}, "reportingComponent": "agentfactory",
        })  # fmt: skip

    # -- work ------------------------------------------------------------------------------

    async def work(self, task: Task, factory: FactorySpecSpec) -> bool:
        """Perform the work the task's status calls for; True when an observation was applied."""
        if task.spec is None:
            return False
        work = work_for(task.name, task.status, factory)
        if isinstance(work, Merge):
            forge = await self._forge(task.factory, factory)
            observation = await asyncio.to_thread(
                merge_observation, task.name, task.spec, work, forge
            )
            return not (await self.apply(task, factory, observation)).ignored
        if isinstance(work, AwaitChecks):
            github = await self._github(task.factory, factory)
            return github is not None and await self._github_ci(task, factory, github, work)
        if work is None:
            return False
        attempt = Attempt(task=task.name, task_uid=task.raw["metadata"].get("uid", ""),
                          namespace=self.namespace, factory=task.factory, stage=work.stage,
                          attempt=work.attempt)  # fmt: skip
        pod = self.view.get("pods", self.namespace, attempt.pod)
        try:
            launched = pod is None and await self.executor.was_launched(attempt)
        except ForeignObjectError as exc:
            return await self._refuse(task, factory, attempt, str(exc))
        if launched:
            pod = await self.kube.get(path_of("v1", "pods", self.namespace, attempt.pod))
            if pod is None:
                lost = f"pod {attempt.pod} was deleted before it finished"
                await self.executor.remove(self.namespace, attempt.pod)  # its Secret too
                return await self._failed(task, factory, attempt, "evicted", lost)
            self.view.put("pods", pod)
        if pod is not None and (foreign := not_made_for("Pod", pod, attempt, attempt.task_uid)):
            return await self._refuse(task, factory, attempt, foreign)
        if pod is None:
            await self._launch(task, task.spec, factory, attempt)
            return False  # the pod's events wake the next pass
        if is_done(pod):
            return await self._collect(task, factory, attempt, pod)
        if pod["metadata"].get("deletionTimestamp"):
            return False  # being deleted: the next pass sees it gone
        late = overdue(pod, datetime.now(UTC), timedelta(seconds=self.unschedulable_seconds))
        if late is not None:
            await self.executor.remove(self.namespace, attempt.pod)
            return await self._failed(task, factory, attempt, late.reason, late.failure)
        return False

    async def _publish(
        self, task: Task, factory: FactorySpecSpec | None, status: AgentTaskStatus
    ) -> None:
        """Mirror the task on its PR: the phase label, and the plan, review and CI comments.
        Best effort: the status is the record, and the next transition publishes again."""
        pr = status.pull_request
        if (
            factory is None
            or pr is None
            or (forge := await self._github(task.factory, factory)) is None
        ):
            return
        number = pr.number

        def publish() -> None:
            forge.label_phase(number, status.phase.value)
            escalation = factory.escalation
            mentions, approvers = escalation.notify.mention_on_pr, escalation.approvers
            forge.comment_all(number, pr_comments(status, mentions, approvers))

        try:
            await asyncio.to_thread(publish)
        except GitHubError as exc:
            log.warning("%s/%s: PR #%s not updated: %s", self.namespace, task.name, number, exc)

    async def _github_ci(
        self, task: Task, factory: FactorySpecSpec, forge: GitHubForge, work: AwaitChecks
    ) -> bool:
        """The required checks on the exact head (once the PR is open: CI on GitHub commonly
        runs on pull_request events)."""
        status = task.status
        head = work.head_sha
        if status.pull_request is None or not self._due(task.name, "checks"):
            return False
        checks = await asyncio.to_thread(forge.checks, head)
        since = status.last_transition_time or datetime.now(UTC)
        verdict = ci_verdict(head, list(work.required), checks,
                             waited=datetime.now(UTC) - since,
                             timeout=timedelta(seconds=work.timeout_seconds))  # fmt: skip
        if verdict is None:
            return False  # still running: the resync comes back
        return not (await self.apply(task, factory, verdict)).ignored

    async def _failed(self, task: Task, factory: FactorySpecSpec, attempt: Attempt,
                      reason: FailureReason, message: str) -> bool:  # fmt: skip
        if self.metrics:
            self.metrics.attempts.labels(attempt.stage.value, reason).inc()
        observation = StageFailed(stage=attempt.stage, attempt=attempt.attempt, reason=reason,
                                  message=message)  # fmt: skip
        return not (await self.apply(task, factory, observation)).ignored

    async def _refuse(
        self, task: Task, factory: FactorySpecSpec, attempt: Attempt, why: str
    ) -> bool:
        """An object someone else made under the attempt's name: its result is not read and
        it is left alone (it is not the operator's to delete); the attempt fails."""
        await self._event(task.raw, "Warning", "ForeignObject", why)
        return await self._failed(task, factory, attempt, "error", f"refused: {why}")

    async def _confined(self, factory: str, spec: FactorySpecSpec) -> None:
        """Make sure the factory's NetworkPolicy exists before a stage pod does (read at most
        once per SECRET_SECONDS): without it the pod could reach anything, the API server
        included. One deleted is made again here; one that cannot be made stops the launch."""
        name = network_policy_name(factory)
        if time.monotonic() - self._confining.get(name, -SECRET_SECONDS) < SECRET_SECONDS:
            return
        policies = path_of("networking.k8s.io/v1", "networkpolicies", self.namespace)
        if await self.kube.get(f"{policies}/{name}") is None:
            raw = self.view.get("factoryspecs", self.namespace, factory) or {}
            uid = (raw.get("metadata") or {}).get("uid", "")
            log.warning("%s: NetworkPolicy %s was missing; making it", self.namespace, name)
            try:
                await self.kube.create(policies, agent_network_policy(factory, self.namespace,
                                                                      uid, spec))  # fmt: skip
            except KubeError as exc:
                if exc.status != 409:  # made meanwhile by the factory's handler: as good
                    raise
        self._confining[name] = time.monotonic()

    async def _launch(
        self, task: Task, spec: AgentTaskSpec, factory: FactorySpecSpec, attempt: Attempt
    ) -> None:
        status = task.status
        await self._confined(task.factory, factory)
        forge = await self._forge(task.factory, factory)
        if attempt.stage == Stage.CI:
            head = status.head_sha or ""
            await asyncio.to_thread(forge.push_branch, status.branch or "", head)
            role, ref, base = None, head, head
            files = input_files(None, ci_checks(spec, factory))
        else:
            key = factory.agents.api_key_secret_ref
            if key is not None:  # the kubelet would mount it: the factory must be let use it
                await self._secret(key.name, task.factory, "spec.agents.apiKeySecretRef")
            inputs = await asyncio.to_thread(agent_inputs, task.name, spec, factory, status, forge)
            role, ref, base = inputs.contract.role.value, inputs.ref, inputs.base
            files = input_files(inputs.contract)
        body = agent_pod(attempt, factory, role=role, repo_url=factory.repository.url, ref=ref)
        body["metadata"]["annotations"][BASE] = base
        try:
            pod = await self.executor.launch(attempt, body, files, forge.credentials_for(role))
        except ManifestError as exc:
            await self._failed(task, factory, attempt, "error", str(exc))
            return
        except ForeignObjectError as exc:
            await self._refuse(task, factory, attempt, str(exc))
            return
        self.view.put("pods", pod)
        log.info("%s/%s launched %s", self.namespace, task.name, attempt.pod)

    async def _collect(
        self, task: Task, factory: FactorySpecSpec, attempt: Attempt, pod: dict[str, Any]
    ) -> bool:
        outcome = await self.executor.outcome(pod)
        observation = await self._observation(task, factory, attempt, pod, outcome)
        failed = isinstance(observation, StageFailed)
        if self.metrics:
            created = pod["metadata"].get("creationTimestamp")
            if created:
                seconds = (datetime.now(UTC) - datetime.fromisoformat(created)).total_seconds()
                self.metrics.stage_seconds.labels(attempt.stage.value).observe(seconds)
            label = observation.reason if isinstance(observation, StageFailed) else "result"
            self.metrics.attempts.labels(attempt.stage.value, label).inc()
        if failed:
            await self._keep(attempt)
        return not (await self.apply(task, factory, observation)).ignored

    async def _keep(self, attempt: Attempt) -> None:
        """Keep a failed pod for debugging, without its credentials, in place of the task's
        previously kept one (the newest failure is the one worth reading)."""
        for pod in self.view.in_namespace("pods", self.namespace):
            labels = pod["metadata"].get("labels") or {}
            name = pod["metadata"]["name"]
            if labels.get("agentfactory.dev/task") == attempt.task and labels.get(KEPT) == "true":
                await self.executor.remove(self.namespace, name)
                self.view.drop("pods", self.namespace, name)
        await self.executor.remove_credentials(self.namespace, attempt.pod)
        path = path_of("v1", "pods", self.namespace, attempt.pod)
        with contextlib.suppress(KubeError):
            self.view.put("pods", await self.kube.patch(
                path, {"metadata": {"labels": {KEPT: "true"}}}))  # fmt: skip

    async def _observation(
        self, task: Task, factory: FactorySpecSpec, attempt: Attempt, pod: dict[str, Any],
        outcome: PodOutcome,
    ) -> Observation:  # fmt: skip
        stage, number = attempt.stage, attempt.attempt
        if stage == Stage.CI and outcome.reason == "timeout":  # ci.timeoutSeconds ran out
            return CIFinished(head_sha=task.status.head_sha or "", state="timeout",
                              attempt=number)  # fmt: skip
        if outcome.result_json is None:  # charged what it reported using before it ended
            spent = Usage.model_validate(outcome.usage) if outcome.usage else Usage()
            return StageFailed(stage=stage, attempt=number, reason=outcome.reason,
                               message=outcome.failure, usage=spent)  # fmt: skip
        try:
            if stage == Stage.CI:
                report = CheckReport.model_validate_json(outcome.result_json)
                return ci_observation(task.status, report.checks)
            result = AgentResult.model_validate_json(outcome.result_json)
        except ValidationError as exc:
            return StageFailed(stage=stage, attempt=number, reason="malformed-result",
                               message=f"the result does not parse: {exc}"[:2000])  # fmt: skip
        forge = await self._forge(task.factory, factory)
        base = pod["metadata"].get("annotations", {}).get(BASE) or forge.base_sha()
        return await asyncio.to_thread(
            agent_observation, task.name, forge, stage, number, base, StageOutcome(result)
        )

    async def _forget_deleted(self, factories: dict[str, FactorySpecSpec]) -> None:
        """Delete the refs the forge kept for each deleted task's patches: the record lives
        as long as the task. (A task deleted while no operator ran keeps them.)"""
        for raw in self.view.take_deleted(self.namespace):
            task = self._task(raw)
            if task.unreadable or not task.status.patches or task.factory not in factories:
                continue
            forge = await self._forge(task.factory, factories[task.factory])
            try:
                refs = await asyncio.to_thread(forge.forget, task.name)
            except ForgeError as exc:
                log.warning("%s/%s: kept patches not removed: %s", self.namespace, task.name, exc)
                continue
            await self._event(
                raw,
                "Normal",
                "KeptPatchesRemoved",
                f"the task was deleted: removed {', '.join(refs) or 'no refs'}",
            )

    async def _clean_up(self, factories: dict[str, FactorySpecSpec]) -> None:
        """Delete every pod of a task that is not its current attempt's, except its kept
        failed pod while the task has not ended (Merged or Cancelled); once it has ended,
        its attempts' inputs too (once per task and process)."""
        raws = self.view.in_namespace("agenttasks", self.namespace)
        tasks = {t.name: t for t in map(self._task, raws)}  # as this pass left them
        for pod in self.view.in_namespace("pods", self.namespace):
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            task = tasks.get(labels.get("agentfactory.dev/task", ""))
            owners = {o.get("uid") for o in meta.get("ownerReferences") or []}
            if (task is None or task.unreadable or meta.get("deletionTimestamp")
                    or task.raw["metadata"].get("uid") not in owners):  # fmt: skip
                continue  # another's pod, one we may not judge, or one going already
            status, factory = task.status, factories.get(task.factory)
            if factory is None:
                continue  # whether it is the current attempt's cannot be told
            work = work_for(task.name, status, factory)
            if isinstance(work, RunAttempt) and meta["name"] == work.name:
                continue
            if labels.get(KEPT) == "true" and status.phase not in ENDED:
                continue
            await self.executor.remove(self.namespace, meta["name"])
            self.view.drop("pods", self.namespace, meta["name"])
        for task in tasks.values():
            uid = task.raw["metadata"].get("uid", "")
            if task.status.phase in ENDED and uid not in self._inputs_removed:
                await self.executor.remove_inputs(self.namespace, task.name)
                self._inputs_removed.add(uid)
