"""The FactorySpec handlers under a real kopf operator against the real API server, with the
chart's RBAC: a valid factory gets Ready and its agents' ServiceAccount and NetworkPolicy; an
invalid one gets a condition with the field and the fix, and nothing crashes."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kopf
import pytest
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic
from testbed.fakes.github_api import FakeGitHub, private_key
from testbed.identity import operator_kubeconfig
from testbed.kube import Api, running_operator, secret_doc, wait_for

import agentfactory.controller.factories
import agentfactory.controller.settings
from agentfactory.kube.auth import connect
from tests.githubs import ALL, REPO

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import aiohttp
    from testbed.apiserver import ControlPlane


@dataclass
class Site:
    api: Api
    http: aiohttp.ClientSession
    ns: str

    @property
    def factories(self) -> str:
        return f"/apis/agentfactory.dev/v1alpha1/namespaces/{self.ns}/factoryspecs"


@asynccontextmanager
async def operator(plane: ControlPlane, tmp_path: Path) -> AsyncIterator[Site]:
    """The operator in this process for a namespace of its own, with the chart's RBAC; an
    administrator's session to make things with."""
    ns = plane.namespace("shop")
    config = operator_kubeconfig(plane, ns, tmp_path / "operator.kubeconfig")
    api = Api(plane.url, plane.ssl_context())
    async with running_operator(connect(str(config)), namespaces=[ns]), api.session() as http:
        secrets = f"{api.url}/api/v1/namespaces/{ns}/secrets"
        key = secret_doc("anthropic", {"api-key": "sk-ant-test"}, "shop")
        assert (await http.post(secrets, json=key)).status == 201
        yield Site(api, http, ns)


def factory(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
            "metadata": {"name": name},
            "spec": {"repository": {"url": "/srv/git/shop.git"},
                     "checks": [{"name": "test", "command": "true"}],
                     "agents": {"apiKeySecretRef": {"name": "anthropic", "key": "api-key"}},
                     **spec}}  # fmt: skip


def ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" for c in conditions)


async def test_a_valid_factory_becomes_ready_with_its_sandbox_objects(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with operator(control_plane, tmp_path) as site:
        url, http, ns = site.api.url, site.http, site.ns
        assert (await http.post(url + site.factories, json=factory("shop"))).status == 201
        obj = await wait_for(site.api, site.factories, "shop", ready)
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "True"
        assert conditions["CredentialsValid"]["reason"] == "NoCredentialsNeeded"
        accounts = f"{url}/api/v1/namespaces/{ns}/serviceaccounts"
        account = await (await http.get(f"{accounts}/agentfactory-agent-shop")).json()
        assert account["automountServiceAccountToken"] is False
        assert account["metadata"]["ownerReferences"][0]["name"] == "shop"
        policies = f"{url}/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        policy = await (await http.get(f"{policies}/agentfactory-agents-shop")).json()
        # Ingress denied: the type named and no rule (the server leaves the empty list out).
        assert "Ingress" in policy["spec"]["policyTypes"]
        assert policy["spec"].get("ingress", []) == []


async def test_a_factory_may_use_only_the_secrets_that_say_it_may(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    # Whoever writes a FactorySpec could name any Secret in the namespace and have the
    # operator send it to a URL of their choice; a Secret says which factories may use it.
    async with operator(control_plane, tmp_path) as site:
        url, http = site.api.url, site.http
        secrets = f"{url}/api/v1/namespaces/{site.ns}/secrets"
        for doc in (secret_doc("payroll-db", {"token": "s3cret"}, None),
                    secret_doc("other-team", {"api-key": "k"}, "other")):  # fmt: skip
            assert (await http.post(secrets, json=doc)).status == 201
        repository = {"url": "https://git.example.test/shop.git",
                      "credentials": {"token": {"secretName": "payroll-db"}}}  # fmt: skip
        key = {"apiKeySecretRef": {"name": "other-team", "key": "api-key"}}
        doc = factory("shop", repository=repository, agents=key)
        assert (await http.post(url + site.factories, json=doc)).status == 201
        obj = await wait_for(site.api, site.factories, "shop", ready)
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
            "False", "SecretNotAllowed")  # fmt: skip
        message = conditions["Ready"]["message"]
        assert ("spec.repository.credentials.token: Secret 'payroll-db' does not let FactorySpec"
                " 'shop' use it; label it: kubectl label secret payroll-db"
                " agentfactory.dev/factory=shop") in message  # fmt: skip
        assert "spec.agents.apiKeySecretRef: Secret 'other-team'" in message
        assert conditions["CredentialsValid"]["reason"] == "SecretNotAllowed"
        assert "s3cret" not in json.dumps(obj)
        # A Secret shared by several factories lists them in an annotation.
        shared = {"metadata": {"annotations": {"agentfactory.dev/factories": "other, shop"}}}
        merge = {"Content-Type": "application/merge-patch+json"}
        for name in ("payroll-db", "other-team"):
            answer = await http.patch(f"{secrets}/{name}", json=shared, headers=merge)
            assert answer.status == 200
        touch = {"metadata": {"annotations": {"example.com/touched": "1"}}}  # a factory event
        await http.patch(f"{url}{site.factories}/shop", json=touch, headers=merge)
        obj = await wait_for(site.api, site.factories, "shop", lambda o: any(
            c["type"] == "Ready" and c["reason"] != "SecretNotAllowed"
            for c in o["status"]["conditions"]))  # fmt: skip
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        assert conditions["CredentialsValid"]["reason"] == "TokenCannotBeScoped"


async def test_an_invalid_factory_gets_a_condition_not_a_crash(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    async with operator(control_plane, tmp_path) as site:
        url, http, ns = site.api.url, site.http, site.ns
        # The server refuses what the schema can say; a pattern that does not compile, it
        # cannot, and the operator says so on the factory.
        refused = await http.post(url + site.factories, json=factory(
            "broken", retries={"perStage": -1}))  # fmt: skip
        assert refused.status == 422
        assert "spec.retries.perStage" in (await refused.json())["message"]
        rules = {"rules": [{"name": "sql", "contentPatterns": ["(unclosed"]}]}
        bad = factory("broken", escalation=rules)
        assert (await http.post(url + site.factories, json=bad)).status == 201
        obj = await wait_for(site.api, site.factories, "broken", ready)
        condition = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
        assert "spec.escalation.rules[0].contentPatterns: rule 'sql'" in condition["message"]
        missing = await http.get(
            f"{url}/api/v1/namespaces/{ns}/serviceaccounts/agentfactory-agent-broken")  # fmt: skip
        assert missing.status == 404, "nothing is created for an invalid factory"


def test_the_handlers_are_registered_with_stable_ids() -> None:
    ids = {h.id for h in kopf.get_default_registry()._changing.get_all_handlers()}
    assert {"factory-create", "factory-update", "factory-resume"} <= ids
    assert agentfactory.controller.factories.GROUP == "agentfactory.dev"


async def reconciled_on_github(
    plane: ControlPlane, tmp_path: Path, github: FakeGitHub, credentials: dict[str, Any],
    secret: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """The factory on the fake GitHub's acme/shop once reconciled, with *credentials* naming
    a Secret that holds *secret*."""
    name = next(iter(credentials.values()))["secretName"]
    async with operator(plane, tmp_path) as site:
        url, http = site.api.url, site.http
        secrets = f"{url}/api/v1/namespaces/{site.ns}/secrets"
        assert (await http.post(secrets, json=secret_doc(name, secret, "shop"))).status == 201
        repository = {"url": github.clone_url(REPO), "forge": "github", "allowHTTP": True,
                      "credentials": credentials}  # fmt: skip
        doc = factory("shop", repository=repository)
        assert (await http.post(url + site.factories, json=doc)).status == 201
        return await wait_for(site.api, site.factories, "shop", ready)


@pytest.mark.parametrize("right_key", [True, False])
async def test_github_app_credentials_are_tried_by_minting_a_token(
    right_key: bool, control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        github.install(7, REPO, **ALL)
        key = github.key if right_key else private_key()
        app = {**github.app_secret(7), "private-key": key}
        obj = await reconciled_on_github(control_plane, tmp_path, github,
                                         {"githubApp": {"secretName": "gh-app"}}, app)  # fmt: skip
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        credentials = conditions["CredentialsValid"]
        if right_key:
            assert (credentials["status"], credentials["reason"]) == ("True", "AppCredentials")
            assert conditions["Ready"]["status"] == "True"
        else:
            assert (credentials["status"], credentials["reason"]) == (
                "False",
                "CredentialsRejected",
            )
            assert "401" in credentials["message"] and "private-key" in credentials["message"]
            assert conditions["Ready"]["reason"] == "CredentialsRejected"
            assert key not in json.dumps(obj), "the key never reaches the status"


async def test_a_merge_method_the_repository_does_not_allow_is_a_spec_error_on_reconcile(
    control_plane: ControlPlane, github: FakeGitHub, tmp_path: Path
) -> None:
    github.merge_methods[REPO] = {"merge", "rebase"}  # the factory merges by squash
    obj = await reconciled_on_github(control_plane, tmp_path, github,
                                     {"githubApp": {"secretName": "gh-app"}},
                                     github.app_secret(7))  # fmt: skip
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["CredentialsValid"]["status"] == "True"
    ready = conditions["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.merge.method: acme/shop does not allow squash")
    assert "(it allows: merge, rebase)" in ready["message"]


@pytest.mark.parametrize("alive", [True, False])
async def test_a_plain_github_token_is_usable_with_a_warning_or_refused(
    alive: bool, control_plane: ControlPlane, tmp_path: Path, remote: Path
) -> None:
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        token = github.personal_token(REPO, contents="write") if alive else "ghp_revoked"
        obj = await reconciled_on_github(control_plane, tmp_path, github,
                                         {"token": {"secretName": "gh-token"}},
                                         {"token": token})  # fmt: skip
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        credentials, readiness = conditions["CredentialsValid"], conditions["Ready"]
        if alive:
            assert (credentials["status"], credentials["reason"]) == (
                "False",
                "TokenCannotBeScoped",
            )
            assert "every agent pod gets the same rights" in credentials["message"]
            assert readiness["status"] == "True", "usable"
        else:
            assert (readiness["status"], readiness["reason"]) == ("False", "CredentialsRejected")
            assert "401: the token is wrong, expired or revoked" in credentials["message"]
        assert token not in json.dumps(obj)


@pytest.mark.parametrize("right_key", [True, False])
async def test_the_model_key_is_tried_on_reconcile(
    right_key: bool, control_plane: ControlPlane, tmp_path: Path
) -> None:
    # A key the model API refuses is found before any task spends an attempt on it.
    with FakeAnthropic([]) as fake:
        async with operator(control_plane, tmp_path) as site:
            url, http = site.api.url, site.http
            key = API_KEY if right_key else "sk-ant-revoked"
            secret = secret_doc("team-key", {"api-key": key}, "shop")
            assert (await http.post(f"{url}/api/v1/namespaces/{site.ns}/secrets",
                                    json=secret)).status == 201  # fmt: skip
            agents = {"apiKeySecretRef": {"name": "team-key", "key": "api-key"},
                      "baseURL": fake.url, "allowHTTP": True}  # fmt: skip
            doc = factory("shop", agents=agents)
            assert (await http.post(url + site.factories, json=doc)).status == 201
            obj = await wait_for(site.api, site.factories, "shop", ready)
    ready_condition = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    if right_key:
        assert ready_condition["status"] == "True", ready_condition
        assert fake.listed == [API_KEY] and fake.statuses == [], "tried once, and taken"
    else:
        assert fake.statuses == [401]
        assert (ready_condition["status"], ready_condition["reason"]) == (
            "False", "APIKeyRejected")  # fmt: skip
        assert ready_condition["message"] == (
            "spec.agents.apiKeySecretRef: the model API refused the key in Secret 'team-key'"
            " (401 authentication_error: invalid x-api-key); put a valid key there"
        )
        assert "sk-ant-revoked" not in json.dumps(obj), "the key never reaches the status"
