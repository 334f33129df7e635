"""The local run's saved state: each task's status as one JSON file, written atomically.

This plays the part the custom resources' status plays on a cluster: the only memory of a
run. A killed run restarted on the same directory resumes from these files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentfactory.core.task import AgentTaskStatus

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class StateStore:
    """Statuses under `<root>/tasks/`, plus the run's settings in `<root>/run.json`."""

    root: Path

    def _task_file(self, name: str) -> Path:
        return self.root / "tasks" / f"{name}.json"

    def load(self, name: str) -> AgentTaskStatus:
        path = self._task_file(name)
        if not path.exists():
            return AgentTaskStatus()
        return AgentTaskStatus.model_validate_json(path.read_text(encoding="utf-8"))

    def save(self, name: str, status: AgentTaskStatus) -> None:
        path = self._task_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            status.model_dump_json(by_alias=True, exclude_none=True, indent=2), encoding="utf-8"
        )
        os.replace(tmp, path)  # atomic: a kill leaves the old or the new file, never half

    def settings(self) -> dict[str, object]:
        path = self.root / "run.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def save_settings(self, settings: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "run.json.tmp"
        tmp.write_text(json.dumps(settings, indent=2))
        os.replace(tmp, self.root / "run.json")
