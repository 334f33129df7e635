"""The bad-input corpus through the API path: each broken manifest of `tests/bad_manifests/` is
created in the API server (the emulator checks no schema, so the operator is the only guard,
as on a cluster where someone applied with `--validate=false` or the CRDs are older) and the
operator must answer with the same message `agentfactory validate` gives (the field and the
fix) on the object itself: a Failed task, a factory that is not Ready. Nothing crashes, and
the other namespaces' tasks are not held up."""

from __future__ import annotations

import asyncio
import subprocess
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

import agentfactory.controller.factories
import agentfactory.controller.settings
import agentfactory.controller.tasks  # noqa: F401 - registers the handlers
from agentfactory import API_VERSION
from tests.assembly import assert_nothing_lost_or_doubled
from tests.assembly import line as instant_line
from tests.gitutil import bare_remote, git
from tests.instant import End, factory, succeed
from tests.instant import task as instant_task
from tests.kube import emulated, running_operator, wait_for
from tests.test_validation import CORPUS, expectations

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Corpus files that cannot reach the operator through the API, and why.
NOT_THROUGH_THE_API = {
    "02-unknown-phase": "status cannot be set through the resource, only its status subresource",
    "10-unknown-kind": "the API server serves no AgentJob kind (404)",
    "11-wrong-api-version": "the API server serves no agentfactory.dev/v1 (404)",
    "25-invalid-yaml": "kubectl cannot parse it, so nothing is sent",
    "30-document-is-a-list": "kubectl sends no list as one object",
    # The emulator checks no names; an API server refuses these with 422 Invalid.
    "09-bad-name": "the API server refuses the name",
    "29-control-character-in-name": "the API server refuses the name",
    "32-name-too-long": "the API server refuses the name",
}
#: Where the operator finds the problem another way than the validator does.
OPERATOR_SAYS = {
    # The validator checks the task alone; the operator's scheduler finds the cycle first.
    "05-self-dependency": [
        "AgentTask/a: spec.dependsOn: is part of the dependency cycle a -> a; remove one"
        " dependsOn entry"
    ],
}


def api_cases() -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    cases = []
    for path in CORPUS:
        if path.stem not in NOT_THROUGH_THE_API:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
            cases.append((path.stem, docs, OPERATOR_SAYS.get(path.stem, expectations(path))))
    return cases


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


async def told(url: str, namespace: str, kind: str, name: str) -> str | None:
    """What the operator said on the object once it settled, or None if it never did."""
    collection = f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURALS[kind]}"
    try:
        return said(kind, await wait_for(url, collection, name, settled(kind), within=60))
    except TimeoutError:
        return None


async def test_the_operator_answers_each_broken_manifest_with_the_validators_message(
    tmp_path: Path,
) -> None:
    cases = api_cases()
    assert len(cases) >= 25
    remote = bare_remote(tmp_path)
    wrong: list[str] = []

    async def check(index: int, stem: str, docs: list[dict[str, Any]], expected: list[str]
                    ) -> None:  # fmt: skip
        namespace = f"corpus-{index}"
        if not any(d["kind"] == "FactorySpec" for d in docs):
            await create(http, url, namespace, factory("app", remote))
        for doc in docs:
            await create(http, url, namespace, doc)
        for line in expected:
            ref, message = line.split(": ", 1)
            kind, name = ref.split("/", 1)
            answer = await told(url, namespace, kind, name)
            if answer is None or message not in answer:
                wrong.append(f"{stem}: expected {message!r}, said {answer!r}")

    async with (
        emulated() as (_, url),
        running_operator(url, workdir=str(tmp_path / "op"), resync_seconds=1),
        aiohttp.ClientSession() as http,
    ):
        await asyncio.gather(*(check(i, *case) for i, case in enumerate(cases)))
    assert wrong == [], "\n".join(wrong)


async def test_a_dependency_cycle_through_a_hundred_tasks_fails_each_with_the_cycle(
    tmp_path: Path,
) -> None:
    names = [f"t{i:03d}" for i in range(100)]
    ring = [{"apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name},
             "spec": {"factoryRef": "app", "goal": "Close the ring.",
                      "acceptanceCriteria": ["It is closed."], "scope": {"paths": [name]},
                      "dependsOn": [names[(i + 1) % len(names)]]}}
            for i, name in enumerate(names)]  # fmt: skip
    async with (
        emulated() as (_, url),
        running_operator(url, workdir=str(tmp_path / "op"), resync_seconds=1),
        aiohttp.ClientSession() as http,
    ):
        await create(http, url, "ring", factory("app", bare_remote(tmp_path)))
        for doc in ring:
            await create(http, url, "ring", doc)
        answers = await asyncio.gather(*(told(url, "ring", "AgentTask", n) for n in names))
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


async def test_binary_symlinked_and_huge_patches_through_the_operator(tmp_path: Path) -> None:
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

    async with instant_line(tmp_path, patches) as ln:
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


async def test_a_goal_in_any_language_goes_through_to_the_merge_commit(tmp_path: Path) -> None:
    goal = "Grüße 👋, 日本語 and עברית in the greeting."
    doc = instant_task("delta", "line", [])
    doc["spec"]["goal"] = goal
    async with instant_line(tmp_path) as ln:
        await create(ln.http, ln.url, "line", doc)
        delta = await ln.ended("delta")
        await ln.all_ended()
    assert delta["status"]["phase"] == "Merged", delta["status"].get("message")
    assert f"delta: {goal}" in git(ln.remote, "log", "--format=%s", "main").splitlines()
