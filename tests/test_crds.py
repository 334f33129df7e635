"""The generated CRDs: no drift from the models, structural schemas Kubernetes accepts,
printer columns, names, and the examples validated against them with jsonschema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentfactory.cli import main
from agentfactory.core.factory import FactorySpec
from agentfactory.core.task import AgentTask
from agentfactory.manifests.crds import all_crds

ROOT = Path(__file__).parent.parent
CRDS = {name: yaml.safe_load((ROOT / "crds" / name).read_text()) for name in all_crds()}
EXAMPLES = [
    (path, index, doc)
    for path in sorted((ROOT / "examples").rglob("*.yaml"))
    for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
    if doc and doc["apiVersion"].startswith("agentfactory.dev/")
]
OTHERS = [
    doc
    for path in sorted((ROOT / "examples").rglob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc and not doc["apiVersion"].startswith("agentfactory.dev/")
]
MODELS = {"FactorySpec": FactorySpec, "AgentTask": AgentTask}


def schema_of(kind: str) -> dict[str, Any]:
    crd = next(c for c in CRDS.values() if c["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crds_match_the_models(tmp_path: Path) -> None:
    assert main(["crds", "--check"]) == 0, "run `agentfactory crds` and commit crds/"
    main(["crds", "--output-dir", str(tmp_path), "--chart-dir", ""])
    for name in CRDS:
        assert (tmp_path / name).read_text() == (ROOT / "crds" / name).read_text()


def test_the_drift_check_fails_on_a_changed_file(tmp_path: Path) -> None:
    main(["crds", "--output-dir", str(tmp_path), "--chart-dir", str(tmp_path / "chart")])
    (tmp_path / "chart" / "templates" / "crds" / "agenttasks.yaml").write_text("# edited\n")
    check = ["crds", "--check", "--output-dir", str(tmp_path), "--chart-dir"]
    assert main([*check, str(tmp_path / "chart")]) == 1
    assert main([*check, ""]) == 0
    (tmp_path / "agenttasks.yaml").write_text("# hand edited\n")
    assert main([*check, ""]) == 1


@pytest.mark.parametrize("name", sorted(CRDS))
def test_the_chart_ships_the_same_crds_kept_on_uninstall(name: str) -> None:
    text = (ROOT / "charts" / "agentfactory" / "templates" / "crds" / name).read_text()
    lines = text.splitlines()
    assert (lines[0], lines[-1]) == ("{{- if .Values.crds.enabled }}", "{{- end }}")
    shipped = yaml.safe_load("\n".join(lines[1:-1]))
    assert shipped["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert shipped == CRDS[name]


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crds_are_valid_kubernetes_objects(name: str) -> None:
    kubernetes_validate.validate(CRDS[name], "1.31", strict=True)


def test_kubernetes_validate_would_catch_a_broken_crd() -> None:
    broken = yaml.safe_load(yaml.safe_dump(CRDS["agenttasks.yaml"]))
    broken["spec"]["versions"][0]["served"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.31", strict=True)


def walk(node: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(where, node)]
    for key, prop in node.get("properties", {}).items():
        found += walk(prop, f"{where}.{key}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{where}.*")
    return found


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_schemas_are_structural_and_every_field_is_documented(kind: str) -> None:
    for where, node in walk(schema_of(kind)):
        assert "type" in node, f"{where} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "const", "title", "$defs"):
            assert forbidden not in node, f"{where} has {forbidden}"
        assert not ("properties" in node and "additionalProperties" in node), where
        if where.startswith(".metadata") or where in ("", ".apiVersion", ".kind"):
            continue
        if where.endswith(("[]", ".*")):
            continue
        assert node.get("description"), f"{where} has no description"


def test_conditions_and_named_lists_merge_by_key() -> None:
    status = schema_of("AgentTask")["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    rules = schema_of("FactorySpec")["properties"]["spec"]["properties"]["escalation"]
    assert rules["properties"]["rules"]["x-kubernetes-list-map-keys"] == ["name"]


def test_names_columns_and_subresources() -> None:
    tasks, factories = CRDS["agenttasks.yaml"], CRDS["factoryspecs.yaml"]
    assert tasks["metadata"]["name"] == "agenttasks.agentfactory.dev"
    assert tasks["spec"]["names"]["shortNames"] == ["atask"]
    assert factories["spec"]["names"]["shortNames"] == ["fspec"]
    for crd in (tasks, factories):
        assert crd["spec"]["names"]["categories"] == ["factory"]
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}

    def columns(crd: dict[str, Any]) -> list[str]:
        version = crd["spec"]["versions"][0]
        return [
            c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")
        ]

    assert columns(tasks) == ["FACTORY", "PHASE", "STAGE", "ATTEMPT", "PR", "AGE"]
    assert columns(factories) == ["REPO", "ACTIVE", "MERGED", "ATTENTION", "AGE"]


@pytest.mark.parametrize(
    ("path", "index", "doc"), EXAMPLES, ids=[f"{p.name}#{i}" for p, i, _ in EXAMPLES]
)
def test_examples_match_the_crd_schema_and_the_models(
    path: Path, index: int, doc: dict[str, Any]
) -> None:
    jsonschema.Draft4Validator(schema_of(doc["kind"])).validate(doc)
    MODELS[doc["kind"]].model_validate(doc)


def test_the_other_examples_are_valid_kubernetes() -> None:
    assert {doc["kind"] for doc in OTHERS} == {"ConfigMap"}  # the constitutions
    for doc in OTHERS:
        kubernetes_validate.validate(doc, "1.31", strict=True)


def test_the_crd_schema_rejects_what_the_models_reject() -> None:
    doc = next(d for _, _, d in EXAMPLES if d["kind"] == "FactorySpec")
    bad = yaml.safe_load(yaml.safe_dump(doc))
    bad["spec"]["retries"]["perStage"] = -1
    bad["spec"]["merge"]["method"] = "fast-forward"
    errors = {
        e.message for e in jsonschema.Draft4Validator(schema_of("FactorySpec")).iter_errors(bad)
    }
    assert errors == {
        "-1 is less than the minimum of 0",
        "'fast-forward' is not one of ['squash', 'rebase', 'merge']",
    }
    budget = yaml.safe_load(yaml.safe_dump(doc))
    budget["spec"]["budget"]["maxCostUSDPerTask"] = 0
    assert not jsonschema.Draft4Validator(schema_of("FactorySpec")).is_valid(budget), (
        "exclusiveMinimum must survive the translation to OpenAPI v3"
    )
