"""Full pipelines through the local driver: the real runner in bubblewrap sandboxes, the real
SDK against the fake Messages API (routed by task and role), a real bare repository as the
remote. Covers the happy path in dependency order, a rejected plan, CI red twice, retries
exhausted with the whole record kept, escalation by path and by content, a protected path
touched through a program, a merge conflict resolved on the new base, a cycle at load time,
and a run killed with SIGKILL that resumes without losing or duplicating anything."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply, tool
from testbed.gitutil import git
from testbed.scripts import (
    CART,
    CART_FIXED,
    Router,
    claude_code_verdict,
    factory_doc,
    implement,
    replace,
    task_doc,
    verdict,
)

from agentfactory.core.phases import Phase
from agentfactory.local.driver import LoadError, LocalFactory
from agentfactory.local.state import StateStore
from tests.test_operator_engines import CONTRACT_ONLY

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Run:
    tmp: Path
    remote: Path
    router: Router
    lines: list[str] = field(default_factory=list)

    def factory(self) -> LocalFactory:
        return LocalFactory(paths=[str(self.tmp / "manifests")], state_dir=self.tmp / "state",
                            out=self.lines.append)  # fmt: skip

    def status(self, name: str) -> Any:
        return StateStore(self.tmp / "state").load(name)

    def main_log(self) -> list[str]:
        return git(self.remote, "log", "--format=%B%x00", "main").split("\0")


def setup(
    tmp: Path, remote: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeAnthropic,
    tasks: list[dict[str, Any]], router: Router, **factory: Any,
) -> Run:  # fmt: skip
    manifests = tmp / "manifests"
    manifests.mkdir()
    docs = [factory_doc(remote, **factory), *tasks]
    (manifests / "all.yaml").write_text(yaml.safe_dump_all(docs))
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    return Run(tmp, remote, router)


FIX_CART = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py", "shop/_*.py"])
FIX = implement(replace("shop/cart.py", CART, CART_FIXED))


def pipeline(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch, tasks: list[dict[str, Any]],
    sessions: dict[tuple[str, str], list[list[Reply]]], **factory: Any,
) -> tuple[Run, int]:  # fmt: skip
    goals = {t["spec"]["goal"]: t["metadata"]["name"] for t in tasks}
    router = Router(goals, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, tasks, router, **factory)
        code = run.factory().run()
    return run, code


def trailers(run: Run) -> list[str]:
    return [line.split(": ")[1] for message in run.main_log() for line in message.splitlines()
            if line.startswith("Agentfactory-Task: ")]  # fmt: skip


def test_admitted_tasks_run_their_stages_side_by_side(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # discount's planner (the first to start: passes go by name) answers only once
    # fix-cart's has started: one after the other, fix-cart's would never start meanwhile.
    discount = task_doc("discount", "SAVE10 takes 10% off.", ["shop/pricing.py"])
    release, both = threading.Event(), threading.Event()
    held = [Reply([tool("submit_plan", summary="Do it.", steps=["Change the code"])],
                  hold=release)]  # fmt: skip
    sessions = {
        ("discount", "planner"): [held],
        ("fix-cart", "implementer"): [FIX],
        ("discount", "implementer"): [implement(
            replace("shop/pricing.py", "DISCOUNTS = {}", 'DISCOUNTS = {"SAVE10": 10}'))],
    }  # fmt: skip
    goals = {t["spec"]["goal"]: t["metadata"]["name"] for t in (FIX_CART, discount)}

    def started(key: tuple[str, str]) -> None:
        if key == ("fix-cart", "planner"):
            both.set()

    router = Router(goals, sessions, on_start=started)
    overlapped: list[bool] = []

    def watch() -> None:  # on failure, release the held plan after a while, to end the run
        overlapped.append(both.wait(timeout=300))
        release.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART, discount], router,
                    concurrency={"maxActiveTasks": 2}, checks=IMPORTS)  # fmt: skip
        code = run.factory().run()
    watcher.join()
    assert overlapped == [True], "fix-cart's planner started while discount's was answering"
    assert code == 0, "\n".join(run.lines)
    assert sorted(trailers(run)) == ["discount", "fix-cart"]


def test_the_happy_path_merges_in_dependency_order(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    discount = task_doc("discount", "SAVE10 takes 10% off.", ["shop/pricing.py"],
                        dependsOn=["fix-cart"])  # fmt: skip
    sessions = {
        ("fix-cart", "implementer"): [FIX],
        ("discount", "implementer"): [implement(
            replace("shop/pricing.py", "DISCOUNTS = {}", 'DISCOUNTS = {"SAVE10": 10}'))],
    }  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [FIX_CART, discount], sessions)
    assert code == 0, "\n".join(run.lines)
    assert run.status("fix-cart").phase == Phase.MERGED
    assert run.status("discount").phase == Phase.MERGED
    assert trailers(run) == ["discount", "fix-cart"], "one merge each, in dependency order"
    first_discount = min(i for i, key in enumerate(run.router.started) if key[0] == "discount")
    last_fix = max(i for i, key in enumerate(run.router.started) if key[0] == "fix-cart")
    assert first_discount > last_fix, "discount starts only after fix-cart merged"
    assert git(remote, "show", "main:shop/cart.py").endswith(CART_FIXED)


def test_a_rejected_plan_is_redone_with_the_objections(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {
        ("fix-cart", "plan-reviewer"): [verdict("REQUEST_CHANGES", "Name the failing test."),
                                        verdict()],
        ("fix-cart", "implementer"): [FIX],
    }  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [FIX_CART], sessions)
    status = run.status("fix-cart")
    assert code == 0 and status.phase == Phase.MERGED
    assert status.attempts.plan == 2
    assert "PlanRejected" in [h.reason for h in status.history]
    second_plan = run.router.openings[("fix-cart", "planner")][1]
    assert "Name the failing test." in second_plan


FAST_TOTAL = "def fast_total(items):\n    return sum(p * q for p, q in items)\n"
SPEEDUPS = tool("write_file", path="shop/_speedups.py", content=FAST_TOTAL)
IMPORTED = "    from shop._speedups import fast_total\n    return fast_total(items)"


def test_ci_red_twice_then_green(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The implementer's helper module is git-ignored: its checks pass in its workspace,
    # and CI, on a clean clone of the exact head, fails.
    sessions = {("fix-cart", "implementer"): [
        implement(replace("shop/cart.py", CART, IMPORTED), SPEEDUPS),
        implement(SPEEDUPS),
        implement(replace("shop/cart.py", IMPORTED, CART_FIXED)),
    ]}  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [FIX_CART], sessions)
    status = run.status("fix-cart")
    assert code == 0 and status.phase == Phase.MERGED, "\n".join(run.lines)
    assert [h.reason for h in status.history].count("CIFailed") == 2
    assert status.attempts.implement == 3 and status.patch_revision == 3
    third = run.router.openings[("fix-cart", "implementer")][2]
    assert "CI failed" in third and "_speedups" in third, "CI output goes to the next attempt"


def test_exhausted_retries_keep_every_attempts_diff_checks_and_review(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {
        ("fix-cart", "implementer"): [FIX, implement(SPEEDUPS)],
        ("fix-cart", "code-reviewer"): [verdict("REQUEST_CHANGES", "Add a test."),
                                        verdict("REQUEST_CHANGES", "Still no test.")],
    }  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [FIX_CART], sessions,
                         retries={"perStage": 1})  # fmt: skip
    status = run.status("fix-cart")
    assert code == 1 and status.phase == Phase.NEEDS_ATTENTION
    assert status.reason == "RetriesExhausted" and "retries.perStage is 1" in status.message
    attempts = tmp_path / "state" / "sandboxes" / "shop" / "attempts"
    for pod in ("fix-cart-implement-1", "fix-cart-implement-2"):
        result = json.loads((attempts / pod / "output" / "result.json").read_text())
        assert "+" in result["diff"] and result["implementation"]["checks"][0]["outputTail"]
    for pod, finding in (("fix-cart-code-review-1", "Add a test."),
                         ("fix-cart-code-review-2", "Still no test.")):  # fmt: skip
        result = json.loads((attempts / pod / "output" / "result.json").read_text())
        assert result["verdict"]["findings"][0]["message"] == finding
    assert (attempts / "fix-cart-ci-1" / "checks.json").exists()
    assert not trailers(run), "nothing merged"
    assert "fix-cart" in (tmp_path / "state" / "status" / "fix-cart.yaml").read_text()


#: For tasks that leave the (deliberately broken) cart alone: a check that passes on the base.
IMPORTS = [{"name": "imports", "command": "python3 -c 'import shop.pricing'"}]
MIGRATION = task_doc("orders", "Orders are stored.", ["migrations/**", "shop/db.py"])
ADD_MIGRATION = implement(tool("write_file", path="migrations/0002.sql",
                               content="CREATE TABLE orders (id INTEGER);\n"))  # fmt: skip
DROP = task_doc("cleanup", "Old carts are dropped.", ["shop/db.py"])
RESET = "def reset(cursor):\n    cursor.execute('DROP TABLE carts')\n"
ADD_DROP = implement(tool("write_file", path="shop/db.py", content=RESET))


def test_escalation_by_path_waits_for_approval_then_merges(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {("orders", "implementer"): [ADD_MIGRATION]}
    goals = {"Orders are stored.": "orders"}
    router = Router(goals, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [MIGRATION], router, checks=IMPORTS)
        assert run.factory().run() == 0, "\n".join(run.lines)
        status = run.status("orders")
        assert status.phase == Phase.AWAITING_APPROVAL
        assert status.escalation.matches[0].rule == "migrations"
        assert any("agentfactory local approve orders" in line for line in run.lines)
        assert not trailers(run)
        factory = run.factory()
        factory.human("orders", "approve", by="alice")
        assert factory.run() == 0
    assert run.status("orders").phase == Phase.MERGED
    assert run.status("orders").escalation.approved_by == "alice"
    assert trailers(run) == ["orders"]


def test_escalation_by_content_parks_before_ci_until_approved(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {("cleanup", "implementer"): [ADD_DROP]}
    router = Router({"Old carts are dropped.": "cleanup"}, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [DROP], router, checks=IMPORTS)
        assert run.factory().run() == 1
        status = run.status("cleanup")
        assert status.phase == Phase.NEEDS_ATTENTION and status.reason == "EscalationParked"
        match = status.escalation.matches[0]
        assert (match.rule, match.file, match.line) == ("drop-table", "shop/db.py", 2)
        assert status.attempts.ci == 0, "parked before CI spent anything"
        assert git(remote, "rev-parse", "factory/cleanup") == status.head_sha, "pushed to look at"
        factory = run.factory()
        factory.human("cleanup", "approve", by="bob")
        assert factory.run() == 0
    assert run.status("cleanup").phase == Phase.MERGED


def test_a_protected_path_changed_through_a_program_is_refused_and_parked(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write tools refuse protected paths; a program the implementer may run can still
    # change one, and the core's guardrail catches the patch.
    sessions = {("fix-cart", "implementer"): [
        implement(replace("shop/cart.py", CART, CART_FIXED),
                  tool("run_command", command="python3 tools/bump.py")),
    ]}  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [FIX_CART], sessions,
                         retries={"perStage": 0})  # fmt: skip
    status = run.status("fix-cart")
    assert code == 1 and status.phase == Phase.NEEDS_ATTENTION
    violation = status.guardrail_violations[0]
    assert (violation.rule, violation.file) == ("protected-path", ".github/workflows/ci.yml")
    assert git(remote, "show", "main:.github/workflows/ci.yml") == "on: push"
    assert git(remote, "branch", "--list", "factory/fix-cart") == "", "never pushed"


def test_a_merge_conflict_between_two_tasks_is_redone_on_the_new_base(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both run side by side and change the same line; whichever merges second conflicts,
    # and its redo is told so, on the base the first one's change is in.
    both = 'DISCOUNTS = {"SAVE10": 10, "WELCOME5": 5}'
    tasks = [task_doc("save10", "SAVE10 exists.", ["shop/pricing.py"], priority=1),
             task_doc("welcome5", "WELCOME5 exists.", ["shop/pricing.py"])]  # fmt: skip
    sessions = {
        (name, "implementer"): [
            implement(replace("shop/pricing.py", "DISCOUNTS = {}", f"DISCOUNTS = {{{own}}}")),
            implement(replace("shop/pricing.py", f"DISCOUNTS = {{{other}}}", both)),
        ]
        for name, own, other in (("save10", '"SAVE10": 10', '"WELCOME5": 5'),
                                 ("welcome5", '"WELCOME5": 5', '"SAVE10": 10'))
    }  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, tasks, sessions, checks=IMPORTS,
                         concurrency={"maxActiveTasks": 2, "exclusivePaths": False})  # fmt: skip
    assert code == 0, "\n".join(run.lines)
    first, second = trailers(run)[::-1]
    assert {first, second} == {"save10", "welcome5"}
    assert "MergeConflict" not in [h.reason for h in run.status(first).history]
    assert "MergeConflict" in [h.reason for h in run.status(second).history]
    redo = run.router.openings[(second, "implementer")][1]
    assert "conflicts in: shop/pricing.py" in redo
    assert git(remote, "show", "main:shop/pricing.py") == both


def test_a_dependency_cycle_is_reported_at_load_time(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [
        task_doc("a", "A.", ["shop/a.py"], dependsOn=["b"]),
        task_doc("b", "B.", ["shop/b.py"], dependsOn=["a"]),
    ]
    run, code = pipeline(tmp_path, remote, monkeypatch, tasks, {})
    assert run.lines[0] == "dependency cycle a -> b -> a: these tasks will fail"
    assert code == 1
    for name in ("a", "b"):
        status = run.status(name)
        assert status.phase == Phase.FAILED and "a -> b -> a" in status.message
    assert not run.router.started, "no agent ran"


def test_a_person_retries_a_parked_task_and_it_merges(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = {("fix-cart", "implementer"): [
        implement(replace("shop/cart.py", CART, CART_FIXED),
                  tool("run_command", command="python3 tools/bump.py")),
        FIX,
    ]}  # fmt: skip
    router = Router({"cart_total counts quantities.": "fix-cart"}, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART], router,
                    retries={"perStage": 0})  # fmt: skip
        assert run.factory().run() == 1
        factory = run.factory()
        factory.human("fix-cart", "retry", by="carol")
        assert factory.run() == 0, "\n".join(run.lines)
    status = run.status("fix-cart")
    assert status.phase == Phase.MERGED and status.round == 2
    assert status.attempts.implement == 2, "resumed at the stage that stopped, new attempt"
    assert status.attempts.plan == 1, "the approved plan was kept"
    assert trailers(run) == ["fix-cart"]


CONSTITUTION = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "principles"},
                "data": {"AGENTS.md": "Money is integer cents: CONSTITUTION-MARKER."}}  # fmt: skip


def test_the_factory_constitution_reaches_every_agent_locally_too(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = Router({FIX_CART["spec"]["goal"]: "fix-cart"}, {("fix-cart", "implementer"): [FIX]})
    constitution = {"constitution": {"name": "principles", "key": "AGENTS.md"}}
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART], router, agents=constitution)
        (tmp_path / "manifests" / "principles.yaml").write_text(yaml.safe_dump(CONSTITUTION))
        assert run.factory().run() == 0, "\n".join(run.lines)
        openings = [json.dumps(request["messages"][0]) for request in fake.requests]
    assert openings and all("CONSTITUTION-MARKER" in opening for opening in openings)


def test_a_constitution_that_is_not_among_the_files_is_a_load_error(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = Router({}, {})
    with FakeAnthropic([router]) as fake:
        agents = {"constitution": {"name": "principles", "key": "AGENTS.md"}}
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART], router, agents=agents)
        said = r"spec\.agents\.constitution: ConfigMap 'principles' with the key 'AGENTS\.md'"
        with pytest.raises(LoadError, match=said):
            run.factory()


def test_a_model_key_the_api_refuses_parks_at_once_as_a_set_up_error(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = Router({FIX_CART["spec"]["goal"]: "fix-cart"}, {})
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART], router)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-revoked")
        code = run.factory().run()
    status = run.status("fix-cart")
    assert code == 1 and status.phase == Phase.NEEDS_ATTENTION, "\n".join(run.lines)
    assert status.reason == "SetupFailed"
    assert status.message.startswith(
        "plan cannot run: api-key: the model API refused the key (401 authentication_error:"
        " invalid x-api-key)"
    ), status.message
    assert "{'type'" not in status.message, "the API's words, not the SDK's dict"
    assert "agentfactory local retry fix-cart" in status.message
    assert status.attempts.plan == 1, "one attempt, not the retry caps' worth"


def test_each_role_runs_on_its_engine_and_no_sandbox_holds_the_model_key(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner on the builtin runner, the plan reviewer a contract-only agent image's
    # command (run on this machine: there is no image runtime), the code reviewer Claude Code,
    # and the implementer a compromised image that prints everything it can read (every
    # process's environment and command line, its inputs, home and /tmp) before its work.
    search = CONTRACT_ONLY.parent / "look-for-secrets.sh"
    image = {"engine": "image", "image": "registry.example.test/contract-only:1",
             "command": ["/bin/sh", str(CONTRACT_ONLY)]}  # fmt: skip
    hostile = {"engine": "image", "image": "registry.example.test/hostile:1",
               "command": ["/bin/sh", str(search)]}  # fmt: skip
    agents = {"roles": {"planReviewer": image, "implementer": hostile,
                        "codeReviewer": {"engine": "claude-code"}}}  # fmt: skip
    sessions = {("fix-cart", "code-reviewer"): [claude_code_verdict()]}
    goals = {FIX_CART["spec"]["goal"]: "fix-cart"}
    router = Router(goals, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [FIX_CART], router, agents=agents)
        code = run.factory().run()
    assert code == 0, "\n".join(run.lines)
    assert run.status("fix-cart").phase == Phase.MERGED
    assert [role for _, role in run.router.started] == ["planner", "code-reviewer"]
    assert git(remote, "show", "main:shop/cart.py").endswith(CART_FIXED)
    attempts = tmp_path / "state" / "sandboxes" / "shop" / "attempts"
    said = (attempts / "fix-cart-plan-review-1" / "engine.log").read_text()
    assert "plan-reviewer working on" in said
    review = (attempts / "fix-cart-code-review-1" / "agent.log").read_text()
    assert "[heartbeat] code-reviewer turn 1/" in review, "Claude Code reviewed"
    seen = (attempts / "fix-cart-implement-1" / "engine.log").read_text()
    assert "== end of the search" in seen and "== /proc/1\n" in seen, "it searched"
    assert "ANTHROPIC_API_KEY=afgw1." in seen, "it holds an attempt token"
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in seen, "and the gateway's address"
    assert API_KEY not in seen, "never the key"
    for log in attempts.glob("*/*.log"):
        assert API_KEY not in log.read_text(), log
    # Every token the API counted was charged, by the gateway, to the attempt that used it.
    assert set(fake.keys) == {API_KEY}
    api = sum(u["input_tokens"] + u["output_tokens"] + u["cache_read_input_tokens"]
              + u["cache_creation_input_tokens"] for u in fake.usages)  # fmt: skip
    assert run.status("fix-cart").usage.total_tokens == api > 0


TOTALS = ("from shop.cart import cart_total\n\n\ndef test_two_items():\n"
          "    assert cart_total([(1, 2), (3, 1)]) == 5\n")  # fmt: skip


def test_a_fix_whose_tests_prove_nothing_goes_back_until_they_do(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A `fix` must come with a test that fails without it: the first patch has none, the
    # second adds one that passes on the base too, the third one that fails there.
    fix = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py", "tests/**"],
                   kind="fix")  # fmt: skip
    passes_anyway = ("from shop.cart import cart_total\n\n\ndef test_empty_cart():\n"
                     "    assert cart_total([]) == 0\n")  # fmt: skip
    sessions = {("fix-cart", "implementer"): [
        FIX,
        implement(replace("shop/cart.py", CART, CART_FIXED),
                  tool("write_file", path="tests/test_totals.py", content=passes_anyway)),
        implement(replace("shop/cart.py", CART, CART_FIXED),
                  tool("write_file", path="tests/test_totals.py", content=TOTALS)),
    ]}  # fmt: skip
    run, code = pipeline(tmp_path, remote, monkeypatch, [fix], sessions,
                         retries={"perStage": 3})  # fmt: skip
    assert code == 0, "\n".join(run.lines)
    status = run.status("fix-cart")
    assert status.phase == Phase.MERGED
    said = [h.message for h in status.history if h.reason == "CIFailed"]
    assert said == ["CI failed: prove-fix", "CI failed: prove-fix"], said
    # Each redo was told why, with the tests that proved nothing named.
    second, third = run.router.openings["fix-cart", "implementer"][1:]
    assert "the patch adds or changes no test" in second
    assert "tests/test_totals.py::test_empty_cart" in third and "prove nothing" in third
    assert status.ci is not None and status.ci.proof is not None
    assert status.ci.proof.verdict == "proven" and status.ci.proof.required
    assert [(t.test, t.base, t.head) for t in status.ci.proof.tests] == [
        ("tests/test_totals.py::test_two_items", "failed", "passed")]  # fmt: skip
    assert git(remote, "show", "main:tests/test_totals.py") == TOTALS.strip()


def test_a_weakened_test_goes_back_once_then_the_reviewer_and_a_person_weigh_it(
    tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first weakened patch goes back with the finding; the second, still weakened, is
    # shown to the code reviewer, then waits for a person, whose approval merges it.
    change = task_doc("fix-cart", "cart_total counts quantities.", ["shop/cart.py", "tests/**"])
    loosened = "self.assertEqual(cart_total([(250, 2)]), 500)"
    weaker = "self.assertIsNotNone(cart_total([(250, 2)]))"
    sessions = {("fix-cart", "implementer"): [
        implement(replace("tests/test_cart.py", loosened, weaker)),
        implement(replace("shop/cart.py", CART, CART_FIXED)),
    ]}  # fmt: skip
    goals = {change["spec"]["goal"]: "fix-cart"}
    router = Router(goals, sessions)
    with FakeAnthropic([router], repeat_last=True) as fake:
        run = setup(tmp_path, remote, monkeypatch, fake, [change], router)
        assert run.factory().run() == 0, "\n".join(run.lines)
        status = run.status("fix-cart")
        assert status.phase == Phase.AWAITING_APPROVAL, status.message
        said = [h.message for h in status.history if h.reason == "CIFailed"]
        assert said == ["CI failed: test-weakening"], said
        finding = "Cart.test_quantity now asserts that a value merely exists"
        assert finding in run.router.openings["fix-cart", "implementer"][1]
        assert finding in run.router.openings["fix-cart", "code-reviewer"][0]
        assert finding in status.message and status.escalation.rules == ["test-weakening"]
        assert any(line.strip().startswith("weakened `tests/test_cart.py` Cart.test_quantity")
                   for line in run.lines), "\n".join(run.lines)  # fmt: skip
        assert status.ci.proof is not None and not status.ci.proof.required, "advisory"
        factory = run.factory()
        factory.human("fix-cart", "approve", by="alice")
        assert factory.run() == 0
    assert run.status("fix-cart").phase == Phase.MERGED
    assert weaker in git(remote, "show", "main:tests/test_cart.py"), "accepted as intended"
