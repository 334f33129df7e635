"""Offline validation of FactorySpec and AgentTask manifests, with messages people can act on.

Every problem prints as ``file: Kind/name: field.path: what is wrong; how to fix it``. Pydantic
reports what is wrong; this module adds where (the camelCase path users wrote) and the fix
(a hint per error type, the allowed values, the closest known field name for a typo).
Cross-resource checks (dependency cycles, references to tasks or factories not given) run
over all the files together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import ValidationError

from agentfactory import GROUP
from agentfactory.core.explain import describe, kind_name
from agentfactory.core.factory import FactorySpec, Roles
from agentfactory.core.pricing import price_of
from agentfactory.core.scheduler import find_cycles
from agentfactory.core.task import AgentTask

if TYPE_CHECKING:
    from collections.abc import Iterable


Resource = FactorySpec | AgentTask
MODELS: dict[str, type[FactorySpec] | type[AgentTask]] = {
    "FactorySpec": FactorySpec,
    "AgentTask": AgentTask,
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest."""

    file: str
    resource: str
    path: str
    message: str
    severity: Literal["error", "warning", "note"] = "error"
    """An error fails the validation; a warning does not; a note says what was not checked."""

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}: {self.resource}: {self.path}: {prefix}{self.message}"


@dataclass(frozen=True)
class Loaded:
    """A manifest that validated."""

    file: str
    resource: Resource

    @property
    def ref(self) -> str:
        return f"{self.resource.kind}/{self.resource.metadata.name}"


def validate_document(file: str, index: int, doc: Any) -> tuple[Loaded | None, list[Problem]]:
    """Validate one YAML document."""
    if not isinstance(doc, dict):
        return None, [
            Problem(
                file,
                f"document {index + 1}",
                "(document)",
                f"is {kind_name(doc)}; a manifest is a mapping with apiVersion, kind,"
                " metadata and spec",
            )
        ]
    kind = doc.get("kind")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    shown = name if not isinstance(name, str) or name.isprintable() else repr(name)
    ref = f"{kind or '?'}/{shown or f'(unnamed, document {index + 1})'}"
    model = MODELS.get(kind) if isinstance(kind, str) else None
    api = doc.get("apiVersion")
    if model is None and isinstance(api, str) and not api.startswith(f"{GROUP}/"):
        # Kubernetes' own kinds (a constitution ConfigMap, a Secret) sit beside ours.
        note = "not an agentfactory kind; not checked here (kubectl apply --dry-run=server does)"
        return None, [Problem(file, ref, "kind", note, severity="note")]
    if model is None:
        return None, [
            Problem(
                file,
                ref,
                "kind",
                f"is {kind!r}; use one of {', '.join(sorted(MODELS))}",
            )
        ]
    try:
        # As strict as the CRD's schema: "300" is not an integer, nor "yes" a boolean. Checked
        # as JSON, where strictness still reads enums and timestamps from their strings.
        resource = model.model_validate_json(json.dumps(doc, default=str), strict=True)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path, message = describe(error, model)
            problems.append(Problem(file, ref, path, message))
        return None, problems
    return Loaded(file, resource), []


def load_file(path: Path) -> tuple[list[tuple[int, Any]], list[Problem]]:
    """The YAML documents in *path* (empty documents skipped), or the parse problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), "-", "(file)", f"cannot be read: {exc}; check the path")]
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        return [], [Problem(str(path), "-", where, f"invalid YAML: {problem}; fix the syntax")]
    return [(index, doc) for index, doc in enumerate(docs) if doc is not None], []


def expand(paths: Iterable[str]) -> list[Path]:
    """Files named, plus every .yaml/.yml file inside directories named, in order."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


def _unpriced(item: Loaded, factory: FactorySpec) -> list[Problem]:
    """A warning per model without a known price: its cost would count as $0, silently, and
    only the token budget would hold."""
    agents = factory.spec.agents
    models = {"spec.agents.model": agents.model}
    for role, override in agents.roles:
        if override.model:
            models[f"spec.agents.roles.{Roles.model_fields[role].alias or role}.model"] = (
                override.model
            )
    return [
        Problem(item.file, item.ref, field,
                f"'{model}' has no known price: its cost counts as $0, so"
                " budget.maxCostUSDPerTask cannot stop it (budget.maxTokensPerTask still does);"
                " use a Claude model name, or rely on the token budget", severity="warning")
        for field, model in models.items() if price_of(model) is None
    ]  # fmt: skip


def _unfillable_batches(item: Loaded, factory: FactorySpec) -> list[Problem]:
    """A warning when `merge.batchSize` cannot take effect as written."""
    merge, slots = factory.spec.merge, factory.spec.concurrency.max_active_tasks
    if merge.batch_size == 1:
        return []
    if merge.method == "rebase":
        why = ("has no effect with merge.method rebase, which verifies one task at a time;"
               " use squash or merge to batch")  # fmt: skip
    elif factory.spec.ci.source == "github-checks":
        why = ("has no effect with ci.source github-checks: the repository's own CI runs on"
               " every task's head anyway (and branch protection asks for it); batch with"
               " ci.source sandbox")  # fmt: skip
    elif merge.batch_size > slots:
        why = (
            f"is more than concurrency.maxActiveTasks {slots}: queued tasks keep their slot,"
            f" so a batch never holds more than {slots}; raise maxActiveTasks with it"
        )
    else:
        return []
    return [Problem(item.file, item.ref, "spec.merge.batchSize", why, severity="warning")]


def cross_check(loaded: list[Loaded]) -> list[Problem]:
    """Problems only visible across resources: duplicates, cycles, dangling references."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for item in loaded:
        if item.ref in seen:
            problems.append(
                Problem(item.file, item.ref, "metadata.name",
                        f"is also defined in {seen[item.ref]}; give each resource its own name")
            )  # fmt: skip
        seen.setdefault(item.ref, item.file)
    tasks: dict[str, tuple[Loaded, AgentTask]] = {
        item.resource.metadata.name: (item, item.resource)
        for item in loaded
        if isinstance(item.resource, AgentTask)
    }
    factories = {i.resource.metadata.name for i in loaded if isinstance(i.resource, FactorySpec)}
    for item in loaded:
        if isinstance(item.resource, FactorySpec):
            problems += _unpriced(item, item.resource)
            problems += _unfillable_batches(item, item.resource)
    graph = {name: task.spec.depends_on for name, (_, task) in tasks.items()}
    for cycle in find_cycles(graph):
        chain = " -> ".join(cycle)
        for name in cycle[:-1]:
            item = tasks[name][0]
            problems.append(
                Problem(item.file, item.ref, "spec.dependsOn",
                        f"is part of the dependency cycle {chain}; remove one dependsOn entry")
            )  # fmt: skip
    for item, task in tasks.values():
        if factories and task.spec.factory_ref not in factories:
            problems.append(
                Problem(item.file, item.ref, "spec.factoryRef",
                        f"names {task.spec.factory_ref!r}, which is not among the given"
                        f" FactorySpecs ({', '.join(sorted(factories))}); fix the name or"
                        " apply that factory",
                        severity="warning")
            )  # fmt: skip
        for dep in task.spec.depends_on:
            if dep not in tasks:
                problems.append(
                    Problem(item.file, item.ref, "spec.dependsOn",
                            f"names {dep!r}, which is not among the given tasks; the task waits"
                            " in Pending until it exists", severity="warning")
                )  # fmt: skip
    return problems


def validate_paths(paths: Iterable[str]) -> tuple[list[Loaded], list[Problem]]:
    """Validate every manifest in *paths* (files or directories)."""
    loaded: list[Loaded] = []
    problems: list[Problem] = []
    for path in expand(paths):
        docs, load_problems = load_file(path)
        problems += load_problems
        for index, doc in docs:
            item, doc_problems = validate_document(str(path), index, doc)
            problems += doc_problems
            if item is not None:
                loaded.append(item)
    return loaded, problems + cross_check(loaded)
