"""Helm's own engine for the chart tests: helm-sdkpy in `.venv-helm` (Python 3.12, see the
README's test command), run as a process through `tests/helm_driver.py`, installing into the
API emulator."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.builders import merge
from tests.kube import MONITORING, Emulator, emulated, kubeconfig, serve

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).parent.parent
CHART = ROOT / "charts" / "agentfactory"
DRIVER = Path(__file__).parent / "helm_driver.py"
HELM_PYTHON = Path(
    os.environ.get("AGENTFACTORY_HELM_PYTHON") or ROOT / ".venv-helm" / "bin" / "python"
)
SET_UP = (
    "PYENV_VERSION=3.12 python3.12 -m venv .venv-helm"
    " && .venv-helm/bin/pip install -q 'helm-sdkpy>=0.1.32,<0.2'"
)
HELM_READY = HELM_PYTHON.exists()
ERROR = 3  # Helm's lint severities: 1 info, 2 warning, 3 error


class HelmError(Exception):
    """Helm refused: its message."""


async def helm(request: dict[str, Any]) -> Any:
    """One request to Helm's engine (see helm_driver.py); its result, or HelmError."""
    assert HELM_READY, f"Helm's engine runs in {HELM_PYTHON}; set it up: {SET_UP}"
    process = await asyncio.create_subprocess_exec(
        str(HELM_PYTHON), str(DRIVER),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "HELM_DRIVER": "memory"},
    )  # fmt: skip
    out, err = await process.communicate(json.dumps(request).encode())
    assert process.returncode == 0, err.decode()
    answer = json.loads(out)
    if not answer["ok"]:
        raise HelmError(answer["error"])
    return answer["result"]


def chart_with(values: dict[str, Any], where: Path) -> Path:
    """A copy of the chart whose values.yaml is the chart's with *values* laid over it: Helm's
    lint reads only the chart's own values file."""
    copy = where / "agentfactory"
    shutil.copytree(CHART, copy)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    (copy / "values.yaml").write_text(json.dumps(merge(defaults, values), indent=2))
    return copy


async def lint(values: dict[str, Any], where: Path) -> list[tuple[int, str]]:
    """Helm's lint of the chart with *values*: (severity, path) of each message."""
    result = await helm({"action": "lint", "chart": str(chart_with(values, where))})
    assert result["TotalChartsLinted"] == 1
    return [(m["Severity"], m["Path"]) for m in result["Messages"] or []]


@dataclass
class Release:
    """What `helm install` made: the objects in the API server, and the NOTES."""

    emulator: Emulator
    notes: str

    def objects(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Objects of *kind* by (namespace, name); cluster-scoped ones have namespace ''."""
        return {(ns or "", name): obj.raw for (_, ns, name), obj in self.emulator.objects.items()
                if obj.raw.get("kind") == kind and not obj.deleted}  # fmt: skip

    def one(self, kind: str) -> dict[str, Any]:
        found = list(self.objects(kind).values())
        assert len(found) == 1, f"{len(found)} {kind} objects"
        return found[0]


@asynccontextmanager
async def installed(
    values: dict[str, Any], where: Path, *, monitoring: bool = True,
    namespace: str = "agentfactory", release: str = "af",
) -> AsyncIterator[Release]:  # fmt: skip
    """`helm install` of the chart with *values* into a fresh emulator (which serves the
    Prometheus Operator's kinds when *monitoring*)."""
    async with emulated() as (emulator, url):
        if monitoring:
            serve(emulator, MONITORING)
        result = await helm({
            "action": "install", "chart": str(CHART), "release": release,
            "namespace": namespace, "kubeconfig": str(kubeconfig(where / "kubeconfig", url)),
            "values": values,
        })  # fmt: skip
        assert result["status"] == "deployed", result
        yield Release(emulator, result["notes"])
