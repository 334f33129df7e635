"""The FactorySpec handlers under a real kopf operator against kmock's emulator: a valid
factory gets Ready and its agents' ServiceAccount and NetworkPolicy; an invalid one gets a
condition with the field and the fix, and nothing crashes."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import kopf
import pytest

import agentfactory.controller.factories
import agentfactory.controller.settings
from tests.fakes.github_api import FakeGitHub, private_key
from tests.githubs import ALL, REPO
from tests.kube import emulated, running_operator, secret_doc, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

FACTORIES = "/apis/agentfactory.dev/v1alpha1/namespaces/shop/factoryspecs"


@asynccontextmanager
async def operator() -> AsyncIterator[str]:
    async with emulated() as (_, url), running_operator(url):
        yield url


def factory(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "agentfactory.dev/v1alpha1", "kind": "FactorySpec",
            "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
            "spec": {"repository": {"url": "/srv/git/shop.git"}, **spec}}  # fmt: skip


def ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" for c in conditions)


async def test_a_valid_factory_becomes_ready_with_its_sandbox_objects() -> None:
    async with operator() as url, aiohttp.ClientSession() as http:
        assert (await http.post(url + FACTORIES, json=factory("shop"))).status == 200
        obj = await wait_for(url, FACTORIES, "shop", ready)
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "True"
        assert conditions["CredentialsValid"]["reason"] == "NoCredentialsNeeded"
        accounts = f"{url}/api/v1/namespaces/shop/serviceaccounts"
        account = await (await http.get(f"{accounts}/agentfactory-agent-shop")).json()
        assert account["automountServiceAccountToken"] is False
        assert account["metadata"]["ownerReferences"][0]["name"] == "shop"
        policies = f"{url}/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies"
        policy = await (await http.get(f"{policies}/agentfactory-agents-shop")).json()
        assert policy["spec"]["ingress"] == []


async def test_an_invalid_factory_gets_a_condition_not_a_crash() -> None:
    async with operator() as url, aiohttp.ClientSession() as http:
        bad = factory("broken", retries={"perStage": -1})
        assert (await http.post(url + FACTORIES, json=bad)).status == 200
        obj = await wait_for(url, FACTORIES, "broken", ready)
        condition = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
        assert "spec.retries.perStage: is -1; use a value of at least 0" in condition["message"]
        missing = await http.get(
            f"{url}/api/v1/namespaces/shop/serviceaccounts/agentfactory-agent-broken")  # fmt: skip
        assert missing.status == 404, "nothing is created for an invalid factory"


def test_the_handlers_are_registered_with_stable_ids() -> None:
    ids = {h.id for h in kopf.get_default_registry()._changing.get_all_handlers()}
    assert {"factory-create", "factory-update", "factory-resume"} <= ids
    assert agentfactory.controller.factories.GROUP == "agentfactory.dev"


async def reconciled_on_github(
    github: FakeGitHub, credentials: dict[str, Any], secret: dict[str, str]
) -> dict[str, Any]:
    """The factory on the fake GitHub's acme/shop once reconciled, with *credentials* naming
    a Secret that holds *secret*."""
    name = next(iter(credentials.values()))["secretName"]
    async with operator() as url, aiohttp.ClientSession() as http:
        await http.post(f"{url}/api/v1/namespaces/shop/secrets", json=secret_doc(name, secret))
        doc = factory("shop", repository={"url": github.clone_url(REPO), "forge": "github",
                                          "credentials": credentials})  # fmt: skip
        assert (await http.post(url + FACTORIES, json=doc)).status == 200
        return await wait_for(url, FACTORIES, "shop", ready)


@pytest.mark.parametrize("right_key", [True, False])
async def test_github_app_credentials_are_tried_by_minting_a_token(
    right_key: bool, tmp_path: Path, remote: Path
) -> None:
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        github.install(7, REPO, **ALL)
        key = github.key if right_key else private_key()
        app = {**github.app_secret(7), "private-key": key}
        obj = await reconciled_on_github(github, {"githubApp": {"secretName": "gh-app"}}, app)
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


@pytest.mark.parametrize("alive", [True, False])
async def test_a_plain_github_token_is_usable_with_a_warning_or_refused(
    alive: bool, tmp_path: Path, remote: Path
) -> None:
    with FakeGitHub(root=tmp_path / "github") as github:
        github.create_repository(REPO, remote)
        token = github.personal_token(REPO, contents="write") if alive else "ghp_revoked"
        obj = await reconciled_on_github(github, {"token": {"secretName": "gh-token"}},
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
