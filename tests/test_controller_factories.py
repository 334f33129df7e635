"""The FactorySpec handlers under a real kopf operator against kmock's emulator: a valid
factory gets Ready and its agents' ServiceAccount and NetworkPolicy; an invalid one gets a
condition with the field and the fix, and nothing crashes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import kopf

import agentfactory.controller.factories
import agentfactory.controller.settings
from tests.kube import emulated, running_operator, wait_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
