"""The pictures of a local run, read from its state directory alone (so that `agentfactory
graph --state` draws a run in progress without disturbing it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agentfactory.core.handoff import AgentResult
from agentfactory.core.task import AgentTask
from agentfactory.local.driver import manifest_files
from agentfactory.local.state import StateStore
from agentfactory.pictures.report import TaskRecord
from agentfactory.validation import load_file, validate_document

if TYPE_CHECKING:
    from pathlib import Path

    from agentfactory.core.task import AgentTaskStatus


def record_of(state: Path, task: AgentTask, status: AgentTaskStatus) -> TaskRecord:
    """The task as the report shows it, with its patches from the attempts in *state*."""
    name = task.metadata.name
    return TaskRecord(name=name, goal=task.spec.goal, status=status,
                      depends_on=tuple(task.spec.depends_on),
                      diffs=_diffs(state, name))  # fmt: skip


def _diffs(state: Path, task: str) -> dict[str, str]:
    """Each implementer attempt's patch, in attempt order."""
    found: dict[str, str] = {}
    results = state.glob(f"sandboxes/*/attempts/{task}-implement-*/output/result.json")
    for path in sorted(results, key=lambda p: int(p.parts[-3].rsplit("-", 1)[1])):
        try:
            result = AgentResult.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            continue
        if result.diff:
            found[path.parts[-3]] = result.diff
    return found


def run_records(state: Path) -> list[TaskRecord]:
    """Every task of the run saved in *state*, in the manifests' order."""
    settings = state / "run.json"
    if not settings.exists():
        raise FileNotFoundError(f"no saved run in {state}; start one with: agentfactory local DIR")
    paths = [str(p) for p in json.loads(settings.read_text())["paths"]]
    store, records = StateStore(state), []
    for path in manifest_files(paths):
        for index, doc in load_file(path)[0]:
            item, _ = validate_document(str(path), index, doc)
            if item is None or not isinstance(item.resource, AgentTask):
                continue
            task = item.resource
            records.append(record_of(state, task, store.load(task.metadata.name)))
    return records
