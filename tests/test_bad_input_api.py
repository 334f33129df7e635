"""The bad-input corpus through the API path: each broken manifest of `tests/bad_manifests/` is
`kubectl apply`'d to the real API server, as a user would. What the CRDs' schemas can say,
the server refuses at once, and its message names the field the validator names; what gets
through, the operator answers with the same message `agentfactory validate` gives (the field
and the fix) on the object itself: a Failed task, a factory that is not Ready. Nothing
crashes, and the other namespaces' tasks are not held up."""

from __future__ import annotations

import asyncio
import re
import subprocess
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import yaml
from testbed.apiserver import scrubbed_env, tool
from testbed.gitutil import bare_remote, git
from testbed.identity import operator_kubeconfig
from testbed.instant import End, factory, succeed
from testbed.instant import task as instant_task
from testbed.kube import Api, running_operator, wait_for

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from agentfactory import API_VERSION
from agentfactory.kube.auth import connect
from tests.assembly import assert_nothing_lost_or_doubled
from tests.assembly import line as instant_line
from tests.test_validation import CORPUS, expectations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    import aiohttp
    from testbed.apiserver import ControlPlane

#: What kubectl or the server says where our validator names no field to look for.
REFUSED_AS = {
    "10-unknown-kind": 'no matches for kind "AgentJob"',
    "11-wrong-api-version": 'no matches for kind "FactorySpec" in version "agentfactory.dev/v1"',
    "25-invalid-yaml": "error converting YAML to JSON",
    "30-document-is-a-list": "invalid object to validate",
}
#: Accepted by the server, and nothing for the operator to say, with why.
NOTHING_TO_SAY = {
    "02-unknown-phase": "status cannot be set through the resource, only its status subresource",
}
#: Where the operator finds the problem another way than the validator does.
OPERATOR_SAYS = {
    # The validator checks the task alone; the operator's scheduler finds the cycle first.
    "05-self-dependency": [
        "AgentTask/a: spec.dependsOn: is part of the dependency cycle a -> a; remove one"
        " dependsOn entry"
    ],
}


def settled(kind: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        if kind == "AgentTask":
            return status.get("phase") == "Failed"
        ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        return bool(ready) and ready[0]["status"] == "False"

    return check


def said(kind: str, obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    if kind == "AgentTask":
        return str(status.get("message", ""))
    return " ".join(c.get("message", "") for c in status.get("conditions") or [])


PLURALS = {"AgentTask": "agenttasks", "FactorySpec": "factoryspecs"}


async def create(http: aiohttp.ClientSession, url: str, namespace: str,
                 doc: dict[str, Any]) -> None:  # fmt: skip
    doc["metadata"]["namespace"] = namespace
    path = f"{url}/apis/{API_VERSION}/namespaces/{namespace}/{PLURALS[doc['kind']]}"
    async with http.post(path, json=doc) as answer:
        assert answer.status in (200, 201), await answer.text()


async def told(api: Api, namespace: str, kind: str, name: str) -> str | None:
    """What the operator said on the object once it settled, or None if it never did."""
    collection = f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURALS[kind]}"
    try:
        return said(kind, await wait_for(api, collection, name, settled(kind), within=60))
    except TimeoutError:
        return None


async def kubectl_apply(config: Path, namespace: str, path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        tool("kubectl"), "apply", "--namespace", namespace, "-f", str(path),
        env=scrubbed_env(KUBECONFIG=str(config)), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def field_of(expected: str) -> str:
    """The field a validator line names: `AgentTask/a: spec.x[0].y: message` -> spec.x[0].y."""
    return expected.split(": ")[1]


@asynccontextmanager
async def operator_over(
    plane: ControlPlane, namespaces: list[str], tmp_path: Path
) -> AsyncIterator[Api]:
    """The operator in this process, watching *namespaces* with the chart's RBAC there."""
    watched = f"watchNamespaces={{{','.join(namespaces)}}}"
    config = operator_kubeconfig(plane, namespaces[0], tmp_path / "op.cfg", watched)
    async with running_operator(connect(str(config)), namespaces=namespaces,
                                workdir=str(tmp_path / "op"), resync_seconds=1):  # fmt: skip
        yield Api(plane.url, plane.ssl_context())


async def test_each_broken_manifest_is_refused_by_the_server_or_answered_by_the_operator(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    assert len(CORPUS) >= 30
    remote = bare_remote(tmp_path)
    config = control_plane.kubeconfig(tmp_path / "user.cfg")
    namespaces = [control_plane.namespace("corpus") for _ in CORPUS]
    wrong: list[str] = []
    by: dict[str, list[str]] = {"server": [], "operator": [], "neither": []}

    def has_factory(path: Path) -> bool:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            return False
        return any(isinstance(d, dict) and d.get("kind") == "FactorySpec" for d in docs)

    with_factory = {path.stem for path in CORPUS if has_factory(path)}

    async def check(namespace: str, path: Path, http: aiohttp.ClientSession, api: Api) -> None:
        if path.stem not in with_factory:
            await create(http, api.url, namespace, factory("app", remote))
        code, out = await kubectl_apply(config, namespace, path)
        expected = OPERATOR_SAYS.get(path.stem, expectations(path))
        if code != 0:
            by["server"].append(path.stem)
            needles = [REFUSED_AS[path.stem]] if path.stem in REFUSED_AS else [
                field_of(line) for line in expected]  # fmt: skip
            for needle in needles:
                if needle not in out and re.sub(r"\[\d+\]", "", needle) not in out:
                    wrong.append(f"{path.stem}: refused without naming {needle!r}: {out}")
            return
        if path.stem in NOTHING_TO_SAY:
            by["neither"].append(path.stem)
            return
        by["operator"].append(path.stem)
        for line in expected:
            ref, message = line.split(": ", 1)
            kind, name = ref.split("/", 1)
            answer = await told(api, namespace, kind, name)
            if answer is None or message not in answer:
                wrong.append(f"{path.stem}: accepted, then expected {message!r}, said {answer!r}")

    async with operator_over(control_plane, namespaces, tmp_path) as api, api.session() as http:
        await asyncio.gather(*(check(ns, path, http, api)
                               for ns, path in zip(namespaces, CORPUS, strict=True)))  # fmt: skip
    assert wrong == [], "\n".join(wrong)
    assert len(by["server"]) >= 10, by  # the schema's share of the work
    assert len(by["operator"]) >= 5, by


async def test_a_dependency_cycle_through_a_hundred_tasks_fails_each_with_the_cycle(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    names = [f"t{i:03d}" for i in range(100)]
    ring = [{"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name},
             "spec": {"factoryRef": "app", "goal": "Close the ring.",
                      "acceptanceCriteria": ["It is closed."], "scope": {"paths": [name]},
                      "dependsOn": [names[(i + 1) % len(names)]]}}
            for i, name in enumerate(names)]  # fmt: skip
    async with operator_over(control_plane, [namespace], tmp_path) as api, api.session() as http:
        await create(http, api.url, namespace, factory("app", bare_remote(tmp_path)))
        for doc in ring:
            await create(http, api.url, namespace, doc)
        answers = await asyncio.gather(*(told(api, namespace, "AgentTask", n) for n in names))
    for answer in answers:
        assert answer is not None and answer.startswith(
            "spec.dependsOn: is part of the dependency cycle t000 -> t001 -> t002"
        ), answer
        assert answer.endswith("t099 -> t000; remove one dependsOn entry"), answer[-200:]


# -- hostile patches through the operator ------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)) * 4
HUGE_LINES = 40_000


def staged_diff(tmp_path: Path, name: str, make: Callable[[Path], None]) -> str:
    """`git diff --binary` of what *make* does at `work/<name>.txt` in a new repository: the
    form of the patch an implementer's pod hands back."""
    repo = tmp_path / f"patch-{name}"
    (repo / "work").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    make(repo / "work" / f"{name}.txt")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    return subprocess.run(["git", "diff", "--cached", "--binary"], cwd=repo, check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def blob(repo: Path, spec: str) -> bytes:
    return subprocess.run(["git", "show", spec], cwd=repo, check=True, capture_output=True).stdout


async def test_binary_symlinked_and_huge_patches_through_the_operator(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # alpha's implementer adds a binary file, beta's a symlink to /etc/passwd, gamma's a
    # 40,000-line file (a result line of about 1 MB in the pod's log).
    diffs = {
        "alpha": staged_diff(tmp_path, "alpha", lambda path: path.write_bytes(PNG)),
        "beta": staged_diff(tmp_path, "beta", lambda path: path.symlink_to("/etc/passwd")),
        "gamma": staged_diff(tmp_path, "gamma", lambda path: path.write_text(
            "".join(f"line {n}\n" for n in range(HUGE_LINES)))),
    }  # fmt: skip

    def patches(stage: str, name: str, attempt: int) -> End | None:
        return succeed(stage, name, diffs[name] if stage == "implement" else None)

    async with instant_line(control_plane, tmp_path, patches) as ln:
        tasks = await assert_nothing_lost_or_doubled(ln)
    alpha, beta, gamma = (tasks[n]["status"] for n in ("alpha", "beta", "gamma"))
    assert alpha["phase"] == "Merged", alpha.get("message")
    assert blob(ln.remote, "main:work/alpha.txt") == PNG, "the binary landed byte for byte"
    for status, rule, words in (
        (beta, "symlink-out", "'/etc/passwd'"),
        (gamma, "max-changed-lines", f"changes {HUGE_LINES} lines"),
    ):
        assert status["phase"] == "NeedsAttention", status.get("message")
        violations = status["guardrailViolations"]
        assert [v["rule"] for v in violations] == [rule] and words in violations[0]["message"]
    branches = git(ln.remote, "branch", "--list")
    assert "beta" not in branches and "gamma" not in branches, "a refused patch is not pushed"


async def test_a_goal_in_any_language_goes_through_to_the_merge_commit(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    goal = "Grüße 👋, 日本語 and עברית in the greeting."
    doc = instant_task("delta", "line", [])
    doc["spec"]["goal"] = goal
    async with instant_line(control_plane, tmp_path) as ln:
        await ln.create(ln.tasks_path, doc)
        delta = await ln.ended("delta")
        await ln.all_ended()
    assert delta["status"]["phase"] == "Merged", delta["status"].get("message")
    assert f"delta: {goal}" in git(ln.remote, "log", "--format=%s", "main").splitlines()
