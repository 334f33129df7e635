"""Who may approve, as the chart installs it: its ValidatingAdmissionPolicy on the real API
server, exercised by several users with the real `kubectl annotate`, each allowed by RBAC to
patch AgentTasks. The annotation may carry only the requester's own name, and only a listed
approver (or a member of a configured group) may set it."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from testbed.apiserver import ApiError, Credentials, run_tool
from testbed.kube import Api, wait_for
from testbed.scripts import factory_doc, task_doc

from tests.helm import installed

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.apiserver import ControlPlane

KEY = "agentfactory.dev/approved-by"
POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
#: What a team grants the people who work with tasks: RBAC cannot single out one annotation.
PEOPLE_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
    "metadata": {"name": "task-editors"},
    "rules": [{"apiGroups": ["agentfactory.dev"], "resources": ["agenttasks"],
               "verbs": ["get", "list", "patch", "update"]}],
}  # fmt: skip


def person(plane: ControlPlane, where: Path, name: str, *groups: str) -> Path:
    """A kubeconfig for *name* (a client certificate, with *groups*)."""
    cert, key = plane.ca.issue(name, groups=groups)
    return plane.kubeconfig(where / f"{name}.kubeconfig", Credentials(cert, key))


def annotate(config: Path, namespace: str, value: str | None) -> str:
    """`kubectl annotate` the task as the kubeconfig's user: "" when admitted, else what
    kubectl said. None removes the annotation."""
    change = f"{KEY}-" if value is None else f"{KEY}={value}"
    try:
        run_tool("kubectl", "annotate", "--overwrite", "-n", namespace, "agenttask", "fix",
                 change, config=config)  # fmt: skip
    except RuntimeError as refused:
        return str(refused)
    return ""


async def enforced(plane: ControlPlane, namespace: str) -> None:
    """Wait until the admission plugin has loaded the binding. Nothing announces that (the
    policy's status comes from another controller), so a server-side dry run that the policy
    must refuse is repeated until it is refused: bounded by a deadline far beyond any load
    seen, not by a count of tries, so a slow machine waits longer rather than failing."""
    end = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < end:
        body = {"metadata": {"annotations": {KEY: "nobody-listed"}}}  # not the admin's name
        try:
            plane.request("PATCH", f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}"
                          "/agenttasks/fix?dryRun=All", body,
                          content_type="application/merge-patch+json")  # fmt: skip
        except ApiError as refused:
            assert refused.code == 403, refused
            return
        await asyncio.sleep(0.2)  # reason: no event announces the admission plugin's refresh
    raise AssertionError(f"the approvals policy was not enforced in {namespace} within 120 s")


@pytest.fixture
async def approvals(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Any:
    empty = control_plane.namespace()  # watched too, with no FactorySpec in it
    values = {"crds": {"enabled": False}, "approvals": {"groups": ["release-leads"]},
              "watchNamespaces": [namespace, empty]}  # fmt: skip
    async with installed(control_plane, values, tmp_path, namespace=namespace,
                         release=f"ap-{namespace}") as release:  # fmt: skip
        admin = control_plane.kubeconfig(tmp_path / "admin.kubeconfig", namespace=namespace)
        factory = factory_doc(tmp_path / "remote.git", escalation={"approvers": ["alice"]})
        other = factory_doc(tmp_path / "remote.git")  # its own approvers: none listed
        other["metadata"]["name"] = "other"
        role = {**PEOPLE_ROLE, "metadata": {"name": "task-editors", "namespace": namespace}}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "task-editors", "namespace": namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "task-editors"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                 "name": who} for who in ("alice", "bob", "carol")]}  # fmt: skip
        for doc in (factory, other, task_doc("fix", "cart_total counts quantities.", ["shop/"]),
                    role, binding):  # fmt: skip
            doc["metadata"]["namespace"] = namespace
            run_tool("kubectl", "apply", "-f", "-", stdin=json.dumps(doc), config=admin)
        yield release, admin, empty


async def test_only_a_listed_approver_may_approve_and_only_in_their_own_name(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, approvals: Any
) -> None:
    release, admin, empty = approvals
    await enforced(control_plane, namespace)
    # A namespace without factories: the policy's parameters are found missing before its
    # conditions are read, and a task created there (or right after its factory, before the
    # server's cache has it) must not be refused for that.
    early = task_doc("early", "Created before any factory.", ["a"])
    early["metadata"]["namespace"] = empty
    run_tool("kubectl", "apply", "-f", "-", stdin=json.dumps(early), config=admin)
    alice, bob = person(control_plane, tmp_path, "alice"), person(control_plane, tmp_path, "bob")
    carol = person(control_plane, tmp_path, "carol", "release-leads")

    said = annotate(bob, namespace, "alice")  # bob may patch tasks; he writes alice's name
    assert "may only be set to your own user name (bob), not alice" in said, said
    said = annotate(bob, namespace, "bob")
    assert "bob may not approve tasks of FactorySpec shop" in said, said
    assert "approvers are its spec.escalation.approvers and members of release-leads" in said
    said = annotate(alice, namespace, "carol")
    assert "your own user name (alice), not carol" in said, said
    said = annotate(admin, namespace, "alice")  # not even a cluster admin, in another's name
    assert "may only be set to your own user name" in said, said

    assert annotate(alice, namespace, "alice") == ""
    assert annotate(carol, namespace, "carol") == "", "a member of the configured group"
    api = Api(control_plane.url, control_plane.ssl_context())
    tasks = f"/apis/agentfactory.dev/v1alpha1/namespaces/{namespace}/agenttasks"
    task = await wait_for(api, tasks, "fix", lambda t: True)
    assert task["metadata"]["annotations"][KEY] == "carol"
    # Other edits, and taking the annotation away (as the operator does once it has read it),
    # are RBAC's business alone.
    run_tool("kubectl", "label", "-n", namespace, "agenttask", "fix", "team=shop", config=bob)
    assert annotate(bob, namespace, None) == ""

    policy = release.one("ValidatingAdmissionPolicy")
    checked = await wait_for(api, POLICIES, policy["metadata"]["name"],
                             lambda p: "typeChecking" in p.get("status", {}))  # fmt: skip
    assert not checked["status"]["typeChecking"].get("expressionWarnings"), checked["status"]
