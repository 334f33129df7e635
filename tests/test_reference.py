"""docs/reference.md is generated from the models, is current, and documents every field."""

from __future__ import annotations

from pathlib import Path

from agentfactory.cli import main
from agentfactory.manifests.reference import fields, reference, undocumented

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "reference.md"


def test_the_committed_reference_is_current(tmp_path: Path) -> None:
    assert main(["docs", "--check", "--output", str(REFERENCE)]) == 0, (
        "run `agentfactory docs` and commit docs/reference.md"
    )
    stale = tmp_path / "reference.md"
    stale.write_text("# hand edited\n")
    assert main(["docs", "--check", "--output", str(stale)]) == 1


def test_every_field_has_a_description_and_a_row() -> None:
    assert undocumented() == []
    text = reference()
    for row in ("`spec.repository.url` **required** | string", "`spec.intake.githubIssues.label`",
                "`spec.checks[].command` **required**", "`status.history[].to`",
                "one of `github-checks`, `sandbox`"):  # fmt: skip
        assert row in text, row


def test_fields_walk_lists_and_maps() -> None:
    item = {"type": "object", "properties": {"b": {"type": "string"}}}
    value = {"type": "object", "properties": {"c": {"type": "integer"}}}
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "array", "items": item},
        "m": {"type": "object", "additionalProperties": value},
    }}  # fmt: skip
    walked = [(p, r) for p, _, r in fields(schema)]
    assert walked == [("a", True), ("a[].b", False), ("m", False), ("m.*.c", False)]
