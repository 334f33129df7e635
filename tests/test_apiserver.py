"""What the real API server says about our objects: the CRDs are structural and served, the
schema refuses what it can express, status is written only through `/status`, the generation
follows the spec, and the stage pods we build pass Pod Security "restricted" where a pod that
breaks it is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from testbed.apiserver import ApiError
from testbed.builders import factory
from testbed.scripts import task_doc

from agentfactory.core.executors import Attempt
from agentfactory.core.phases import Stage
from agentfactory.manifests.agents import AttemptSecret, agent_pod, agent_service_account

if TYPE_CHECKING:
    from testbed.apiserver import ControlPlane

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def tasks(namespace: str) -> str:
    return f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}/agenttasks"


def refusal(plane: ControlPlane, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    merge = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with pytest.raises(ApiError) as refused:
        plane.request(method, path, body, content_type=merge)
    return refused.value.code, refused.value.status


def test_our_crds_are_structural_and_established(control_plane: ControlPlane) -> None:
    for name in ("agenttasks.agentfactory.dev", "factoryspecs.agentfactory.dev"):
        crd = control_plane.request("GET", f"{CRDS}/{name}")
        conditions = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conditions["Established"]["status"] == "True"
        assert conditions["NamesAccepted"]["status"] == "True"
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]


def test_the_schema_refuses_a_bad_field_naming_it(
    control_plane: ControlPlane, namespace: str
) -> None:
    doc = task_doc("bad", "A goal.", ["shop/**"], priority="urgent")
    code, status = refusal(control_plane, "POST", tasks(namespace), doc)
    assert code == 422, status
    assert "spec.priority" in status["message"], status["message"]


def test_unknown_fields_are_pruned(control_plane: ControlPlane, namespace: str) -> None:
    doc = task_doc("pruned", "A goal.", ["shop/**"], typoField="x")
    created = control_plane.request("POST", tasks(namespace), doc)
    assert "typoField" not in created["spec"]
    assert created["spec"]["goal"] == "A goal."


def test_status_is_written_only_through_the_status_subresource(
    control_plane: ControlPlane, namespace: str
) -> None:
    path = f"{tasks(namespace)}/status-only"
    control_plane.request("POST", tasks(namespace), task_doc("status-only", "G.", ["a/**"]))
    merge = "application/merge-patch+json"
    wrong = control_plane.request("PATCH", path, {"status": {"phase": "Merged"}},
                                  content_type=merge)  # fmt: skip
    assert "status" not in wrong or wrong["status"].get("phase") != "Merged", "dropped"
    right = control_plane.request("PATCH", f"{path}/status", {"status": {"phase": "Pending"}},
                                  content_type=merge)  # fmt: skip
    assert right["status"]["phase"] == "Pending"
    # and the other way round: a spec change sent to /status is not applied
    sneaky = control_plane.request("PATCH", f"{path}/status", {"spec": {"goal": "Other."}},
                                   content_type=merge)  # fmt: skip
    assert sneaky["spec"]["goal"] == "G."


def test_the_generation_moves_with_the_spec_only(
    control_plane: ControlPlane, namespace: str
) -> None:
    path = f"{tasks(namespace)}/generations"
    created = control_plane.request("POST", tasks(namespace), task_doc("generations", "G.", ["a"]))
    assert created["metadata"]["generation"] == 1
    merge = "application/merge-patch+json"
    status = control_plane.request("PATCH", f"{path}/status", {"status": {"phase": "Pending"}},
                                   content_type=merge)  # fmt: skip
    assert status["metadata"]["generation"] == 1
    spec = control_plane.request("PATCH", path, {"spec": {"priority": 3}}, content_type=merge)
    assert spec["metadata"]["generation"] == 2


def stage_pod(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """An implementer's pod as the operator builds it, with the factory's ServiceAccount."""
    account = agent_service_account("shop", namespace, "uid-factory")
    account["metadata"].pop("ownerReferences")  # no factory object to own it here
    plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", account)
    attempt = Attempt(task="add-webhook", task_uid="uid-task", namespace=namespace,
                      factory="shop", stage=Stage.IMPLEMENT, attempt=1)  # fmt: skip
    spec = factory(agents={"apiKeySecretRef": {"name": "anthropic", "key": "api-key"}})
    secret = AttemptSecret.of(attempt, {"contract.json": "{}"}, {"token": "t"})
    pod = agent_pod(attempt, spec, role="implementer", repo_url="https://git.example.test/s.git",
                    ref="a" * 40, secret=secret)  # fmt: skip
    pod["metadata"].pop("ownerReferences", None)  # no task object to own it here
    return pod


def test_our_stage_pod_is_admitted_under_restricted(
    control_plane: ControlPlane, namespace: str
) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods?dryRun=All"
    admitted = control_plane.request("POST", pods, stage_pod(control_plane, namespace))
    assert admitted["metadata"]["name"].startswith("add-webhook-implement")


def test_a_pod_that_breaks_restricted_is_refused(
    control_plane: ControlPlane, namespace: str
) -> None:
    pod = stage_pod(control_plane, namespace)
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    del pod["spec"]["securityContext"]["seccompProfile"]
    code, status = refusal(control_plane, "POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    assert code == 403, status
    assert 'violates PodSecurity "restricted:latest"' in status["message"], status["message"]
    assert "allowPrivilegeEscalation != false" in status["message"]


def test_cel_rules_refuse_what_one_field_alone_cannot(
    control_plane: ControlPlane, namespace: str
) -> None:
    # A task depending on itself: the name and the spec together.
    code, status = refusal(control_plane, "POST", tasks(namespace),
                           task_doc("loop", "G.", ["a"], dependsOn=["loop"]))  # fmt: skip
    assert code == 422
    assert "spec.dependsOn: Invalid value" in status["message"]
    assert "task 'loop' depends on itself; remove 'loop' from spec.dependsOn" in status["message"]
    # A branch prefix the base branch starts with: a task could push onto the base.
    factories = f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}/factoryspecs"
    doc = {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
           "metadata": {"name": "app"},
           "spec": {"repository": {"url": "/srv/app.git", "branchPrefix": ""},
                    "checks": [{"name": "test", "command": "pytest"}]}}  # fmt: skip
    code, status = refusal(control_plane, "POST", factories, doc)
    assert code == 422
    assert "spec.repository.branchPrefix" in status["message"]
    assert 'branchPrefix "" would let a task push to the base branch main' in status["message"]
    # A token in the URL never reaches etcd (and so no condition, Event or pod argument).
    doc["spec"]["repository"] = {"url": "https://bot:ghp_secret@github.com/o/app.git"}
    code, status = refusal(control_plane, "POST", factories, doc)
    assert code == 422 and "spec.repository.url" in status["message"]
    assert "the URL carries credentials (user:token@)" in status["message"]
    # Credentials and the model key travel over https, unless plain http is allowed.
    doc["spec"]["repository"] = {"url": "http://git.example.test/app.git",
                                 "credentials": {"token": {"secretName": "t"}}}  # fmt: skip
    doc["spec"]["agents"] = {"baseURL": "http://llm.example.test"}
    code, status = refusal(control_plane, "POST", factories, doc)
    assert code == 422, status
    assert "spec.repository.url: Invalid value" in status["message"]
    assert "spec.agents.baseURL: Invalid value" in status["message"]
    doc["spec"]["repository"]["allowHTTP"] = doc["spec"]["agents"]["allowHTTP"] = True
    assert control_plane.request("POST", factories, doc)["spec"]["agents"]["allowHTTP"] is True


def test_a_tasks_contract_is_frozen_but_its_priority_and_dependencies_are_not(
    control_plane: ControlPlane, namespace: str
) -> None:
    created = control_plane.request("POST", tasks(namespace), task_doc("frozen", "G.", ["a"]))
    for change in ({"goal": "Another goal."}, {"scope": {"paths": ["**"]}},
                   {"nonGoals": ["added later"]}, {"acceptanceCriteria": ["weaker"]},
                   {"stopWhen": "never"}):  # fmt: skip
        code, status = refusal(control_plane, "PATCH", f"{tasks(namespace)}/frozen",
                               {"spec": change})  # fmt: skip
        assert code == 422, (change, status)
        assert "the task's contract (goal, acceptanceCriteria" in status["message"], status
    moved = control_plane.request(
        "PATCH", f"{tasks(namespace)}/frozen",
        {"spec": {"priority": 5, "dependsOn": ["other"]}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    assert moved["spec"]["priority"] == 5
    assert moved["metadata"]["generation"] == created["metadata"]["generation"] + 1


def test_a_task_cannot_move_to_another_factory(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.request("POST", tasks(namespace), task_doc("moved", "G.", ["a"]))
    code, status = refusal(control_plane, "PATCH", f"{tasks(namespace)}/moved",
                           {"spec": {"factoryRef": "other"}})  # fmt: skip
    assert code == 422, status
    assert "spec.factoryRef: Invalid value" in status["message"]
    assert "factoryRef cannot change once the task exists" in status["message"]
