"""`agentfactory graph`: the task DAG a person reads, from a cluster's AgentTasks or a local
run, drawn in a real browser: each task in its phase's colour, right of what it waits for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.browser import rendered_dom, screenshot, share_of

from agentfactory import API_VERSION
from agentfactory.cli import main
from agentfactory.core.phases import Phase
from agentfactory.pictures.graph import COLOURS, TaskNode, positions, task_graph_svg

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane


def test_each_task_sits_right_of_what_it_waits_for_and_a_cycle_does_not_hang_the_layout() -> None:
    at = positions([
        TaskNode("c", Phase.PENDING, ("b",)), TaskNode("b", Phase.PENDING, ("a",)),
        TaskNode("a", Phase.MERGED), TaskNode("d", Phase.PENDING, ("a", "c")),
        TaskNode("x", Phase.FAILED, ("y",)), TaskNode("y", Phase.FAILED, ("x",)),
    ])  # fmt: skip
    assert at["a"][0] < at["b"][0] < at["c"][0] < at["d"][0]
    assert at["y"][0] < at["x"][0], "the cycle is cut where it closes, once"


def test_the_graph_of_a_namespace_shows_each_task_in_its_phase_colour(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    tasks = f"/apis/{API_VERSION}/namespaces/{namespace}/agenttasks"
    for name, deps in (("schema", []), ("api", ["schema"]), ("ui", ["api"])):
        control_plane.request("POST", tasks, {
            "apiVersion": API_VERSION, "kind": "AgentTask", "metadata": {"name": name},
            "spec": {"factoryRef": "shop", "goal": f"{name} works.", "dependsOn": deps,
                     "acceptanceCriteria": ["it works"], "scope": {"paths": [f"{name}/**"]}},
        })  # fmt: skip
    merged = {"status": {"phase": "Merged", "mergedSHA": "a" * 40}}
    merge = "application/merge-patch+json"
    control_plane.request("PATCH", f"{tasks}/schema/status", merged, content_type=merge)
    waiting = {"status": {"phase": "AwaitingApproval"}}
    control_plane.request("PATCH", f"{tasks}/api/status", waiting, content_type=merge)
    config = control_plane.kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    out = tmp_path / "tasks.svg"
    assert main(["graph", "--namespace", namespace, "--kubeconfig", str(config),
                 "-o", str(out)]) == 0  # fmt: skip
    svg = out.read_text()
    assert svg.count('class="task"') == 3 and svg.count("marker-end=") == 2, "two dependencies"
    dom = rendered_dom(out)
    for name, phase in (("schema", "Merged"), ("api", "AwaitingApproval"), ("ui", "Pending")):
        assert f'data-task="{name}" data-phase="{phase}"' in dom, name
    seen = screenshot(out, (900, 300))
    for phase in (Phase.MERGED, Phase.AWAITING_APPROVAL, Phase.PENDING):
        assert share_of(seen, COLOURS[phase]) > 0.01, phase
    assert share_of(seen, COLOURS[Phase.FAILED]) == 0, "no colour of a phase no task is in"


def test_a_graph_without_a_saved_run_says_how_to_start_one(tmp_path: Path, capsys: object) -> None:
    assert main(["graph", "--state", str(tmp_path / "none")]) == 2


def test_task_names_are_text_not_markup() -> None:
    svg = task_graph_svg([TaskNode("a<b>&c", Phase.PENDING)])
    assert "a&lt;b&gt;&amp;c" in svg and "<b>" not in svg
