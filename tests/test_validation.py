"""`agentfactory validate`: the bad-input corpus (one precise message each), the examples,
warnings that do not fail, and the exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfactory.cli import main

ROOT = Path(__file__).parent.parent
CORPUS = sorted((Path(__file__).parent / "bad_manifests").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_broken_manifest_yields_its_precise_message(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    code = main(["validate", str(path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    for message in expected:
        # Every line starts with the file, then Kind/name (or '-'), field path, message.
        assert any(line.startswith(f"{path}: {message}") for line in out), (
            f"expected a line starting with {message!r} in:\n" + "\n".join(out)
        )


def test_the_examples_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / "examples")])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert all(": note: " in line for line in captured.out.splitlines()), captured.out
    assert "15 valid, 0 errors, 0 warnings, 2 not checked" in captured.err


def test_other_kinds_beside_ours_are_noted_not_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A directory of manifests holds ConfigMaps and Secrets too (the constitution, say).
    (tmp_path / "all.yaml").write_text(
        (ROOT / "examples" / "github" / "factory.yaml").read_text()
        + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: rules}\n"
        + "data: {AGENTS.md: Be careful.}\n"
        + "---\napiVersion: agentfactory.dev/v1alpha1\nkind: FactorySepc\nmetadata: {name: x}\n"
    )
    code = main(["validate", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1, "a typo in one of our kinds is still an error"
    lines = captured.out.splitlines()
    assert (
        f"{tmp_path / 'all.yaml'}: ConfigMap/rules: kind: note: not an agentfactory kind;"
        " not checked here" in lines[0]
    )
    assert "FactorySepc/x: kind: is 'FactorySepc'" in lines[1]
    assert "1 valid, 1 errors, 0 warnings, 1 not checked" in captured.err


def test_dangling_references_warn_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "task.yaml"
    manifest.write_text(
        (ROOT / "examples" / "github" / "factory.yaml").read_text()
        + "\n---\n"
        + """
apiVersion: agentfactory.dev/v1alpha1
kind: AgentTask
metadata: {name: lonely}
spec:
  factoryRef: elsewhere
  goal: g
  acceptanceCriteria: [c]
  scope: {paths: ["src/**"]}
  dependsOn: [missing]
"""
    )
    assert main(["validate", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "AgentTask/lonely: spec.factoryRef: warning: names 'elsewhere'" in out
    assert "AgentTask/lonely: spec.dependsOn: warning: names 'missing'" in out


def test_all_problems_of_a_manifest_are_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: agentfactory.dev/v1alpha1\nkind: AgentTask\nmetadata: {name: t}\n"
        "spec: {goal: 3, priority: 5000, scope: {paths: []}}\n"
    )
    assert main(["validate", str(manifest)]) == 1
    paths = [line.split(": ")[2] for line in capsys.readouterr().out.splitlines()]
    assert sorted(paths) == [
        "spec.acceptanceCriteria", "spec.factoryRef", "spec.goal", "spec.priority",
        "spec.scope.paths",
    ]  # fmt: skip


def test_a_missing_file_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/nonexistent/x.yaml"]) == 1
    assert "/nonexistent/x.yaml: -: (file): cannot be read" in capsys.readouterr().out


def test_an_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 1
    assert "no manifests found" in capsys.readouterr().err


def test_a_model_without_a_price_warns_that_the_dollar_budget_cannot_stop_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "factory.yaml"
    manifest.write_text("""
apiVersion: agentfactory.dev/v1alpha1
kind: FactorySpec
metadata: {name: app}
spec:
  repository: {url: "https://github.com/example/app.git"}
  checks: [{name: test, command: "pytest"}]
  agents:
    model: claude-sonnet-4-6
    roles:
      implementer: {model: my-local-llama}
""")
    assert main(["validate", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert ("FactorySpec/app: spec.agents.roles.implementer.model: warning: 'my-local-llama' has"
            " no known price: its cost counts as $0") in out  # fmt: skip
    assert "spec.agents.model:" not in out, "a priced model is not warned about"


@pytest.mark.parametrize(
    ("merge", "said"),
    [
        pytest.param("{batchSize: 8}", "is more than concurrency.maxActiveTasks 2", id="slots"),
        pytest.param("{batchSize: 2, method: rebase}", "has no effect with merge.method rebase",
                     id="rebase"),
        pytest.param("{batchSize: 2}\n  ci: {source: github-checks, requiredChecks: [test]}",
                     "has no effect with ci.source github-checks", id="github-checks"),
    ],
)  # fmt: skip
def test_a_batch_size_that_cannot_take_effect_warns_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], merge: str, said: str
) -> None:
    manifest = tmp_path / "factory.yaml"
    manifest.write_text(f"""
apiVersion: agentfactory.dev/v1alpha1
kind: FactorySpec
metadata: {{name: app}}
spec:
  repository:
    url: "https://github.com/example/app.git"
    forge: github
    credentials: {{githubApp: {{secretName: app}}}}
  checks: [{{name: test, command: "pytest"}}]
  merge: {merge}
""")
    assert main(["validate", str(manifest)]) == 0
    assert f"FactorySpec/app: spec.merge.batchSize: warning: {said}" in capsys.readouterr().out
    manifest.write_text(manifest.read_text().replace(merge, "{batchSize: 2}"))  # sandbox CI
    assert main(["validate", str(manifest)]) == 0
    assert "batchSize" not in capsys.readouterr().out, "two fit in the default two slots"
