"""The model gateway between agents and the strict fake Messages API: the real SDK, our runner
and Claude Code through it with an attempt token, never the key; usage counted from the API's
answers (streamed ones included, and a stream whose client went away); the budget, the
factory's rate limits and the token's validity enforced before a request starts."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anthropic
import pytest
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply, tool

from agentfactory.agent.claude_code import ClaudeCodeSession
from agentfactory.agent.llm import AnthropicProvider
from agentfactory.agent.runner import Runner
from agentfactory.agent.tools import workspace_for
from agentfactory.core.grants import Grant, GrantError, mint, reader_token, verify
from agentfactory.core.handoff import Role
from agentfactory.gateway.running import in_thread
from agentfactory.gateway.server import Gateway
from tests.test_agent_runner import PLAN, calc_repo, contract

if TYPE_CHECKING:
    from pathlib import Path

SIGNING = b"test-signing-key-not-a-secret"
MODEL = "claude-sonnet-4-6"
HI = [{"role": "user", "content": "hi"}]


def grant(**fields: Any) -> Grant:
    base = {"namespace": "shop", "factory": "shop", "task": "fix-add", "attempt": "fix-add-plan-1",
            "expires": time.time() + 600, "max_tokens": 1_000_000}  # fmt: skip
    return Grant(**{**base, **fields})


async def real_key(given: Grant) -> str:
    del given
    return API_KEY


class Through:
    """The fake API behind a gateway; `client(grant)` is an SDK client holding its token."""

    def __init__(self, fake: FakeAnthropic, gateway: Gateway, url: str) -> None:
        self.fake, self.gateway, self.url = fake, gateway, url
        self.clients: list[anthropic.Anthropic] = []

    def client(self, given: Grant | None = None, retries: int = 0) -> anthropic.Anthropic:
        """An SDK client holding *given*'s token (closed with the gateway)."""
        token = mint(given or grant(), SIGNING)
        self.clients.append(anthropic.Anthropic(api_key=token, base_url=self.url,
                                                max_retries=retries))  # fmt: skip
        return self.clients[-1]

    def spent(self, given: Grant | None = None) -> Any:
        return self.gateway.ledger.spent((given or grant()).attempt_key)


def gateway_over(script: list[Any], **fake: Any) -> Any:
    """A context manager: the fake with *script*, a gateway in front of it."""

    class Both:
        def __enter__(self) -> Through:
            self.fake = FakeAnthropic(script, **fake).__enter__()
            self.gateway = Gateway(SIGNING, real_key, upstream=self.fake.url)
            self.serving = in_thread(self.gateway)
            self.through = Through(self.fake, self.gateway, self.serving.__enter__())
            return self.through

        def __exit__(self, *exc: object) -> None:
            for client in self.through.clients:
                client.close()
            self.serving.__exit__(*exc)
            self.fake.__exit__(*exc)

    return Both()


def test_the_runner_works_through_the_gateway_with_a_token_and_never_the_key(
    tmp_path: Path,
) -> None:
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.PLANNER, base)
    script = [Reply([tool("read_file", path="calc.py")]), Reply([tool("submit_plan", **PLAN)])]
    with gateway_over(script) as g:
        token = mint(grant(), SIGNING)
        provider = AnthropicProvider(api_key=token, base_url=g.url, max_retries=0)
        result = Runner(spec, workspace_for(spec, repo), provider).run()
        spent = g.spent()
    assert result.status == "completed", result.message
    assert g.fake.keys == [API_KEY, API_KEY], "the API sees the key, never the token"
    assert all(g.fake.streamed)
    # Charged what the API said, which is what the runner counted from the same answers.
    assert spent.requests == 2
    assert spent.usage.total_tokens == result.usage.total_tokens
    assert spent.usage.cost_usd == pytest.approx(result.usage.cost_usd)
    assert spent.usage.cache_read_tokens == sum(u["cache_read_input_tokens"] for u in g.fake.usages)


def test_claude_code_works_through_the_gateway(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.PLANNER, base, limits={"maxTurns": 10, "deadlineSeconds": 300})
    with gateway_over([Reply([tool("StructuredOutput", **PLAN)])]) as g:
        env = {"ANTHROPIC_BASE_URL": g.url, "ANTHROPIC_API_KEY": mint(grant(), SIGNING)}
        result = ClaudeCodeSession(spec, workspace_for(spec, repo), env=env).run()
        spent = g.spent()
    assert result.status == "completed", result.message
    assert g.fake.keys == [API_KEY]
    assert spent.usage.total_tokens == result.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("token", "said"),
    [
        pytest.param(lambda: "sk-ant-a-real-looking-key", "not an attempt token", id="a-key"),
        pytest.param(lambda: mint(grant(), b"another-signing-key"), "signature does not match",
                     id="forged"),
        pytest.param(lambda: mint(grant(expires=time.time() - 1), SIGNING), "has expired",
                     id="expired"),
        pytest.param(lambda: mint(grant(), SIGNING)[:-4] + "AAAA", "signature does not match",
                     id="tampered"),
    ],
)  # fmt: skip
def test_a_token_the_gateway_did_not_mint_for_a_live_attempt_is_refused(
    token: Any, said: str
) -> None:
    with (
        gateway_over([Reply([{"type": "text", "text": "hi"}], stop_reason="end_turn")]) as g,
        anthropic.Anthropic(api_key=token(), base_url=g.url, max_retries=0) as client,
        pytest.raises(anthropic.AuthenticationError, match=said),
    ):
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert g.fake.requests == [], "nothing reached the API"


def test_a_closed_attempts_token_is_refused() -> None:
    answer = Reply([{"type": "text", "text": "hi"}], stop_reason="end_turn")
    with gateway_over([answer, answer]) as g:
        client = g.client()
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
        closed = g.gateway.ledger.close(grant().attempt_key)
        with pytest.raises(anthropic.AuthenticationError, match="fix-add-plan-1 has ended"):
            client.messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert closed.requests == 1 and len(g.fake.requests) == 1


def test_no_request_starts_past_the_attempts_budget(tmp_path: Path) -> None:
    repo, base = calc_repo(tmp_path)
    spec = contract(Role.PLANNER, base)
    reads = [Reply([tool("read_file", path="calc.py")])] * 5
    small = grant(max_tokens=1500)
    with gateway_over(reads) as g:
        provider = AnthropicProvider(api_key=mint(small, SIGNING), base_url=g.url, max_retries=0)
        result = Runner(spec, workspace_for(spec, repo), provider).run()
        spent = g.spent(small)
    assert (result.status, result.stopped_by) == ("stopped", "budget"), result.message
    assert "agentfactory budget" in result.message and "budget.maxTokensPerTask" in result.message
    assert spent.usage.total_tokens >= 1500
    assert len(g.fake.requests) == spent.requests == 2, "the third request never started"


def test_a_factorys_requests_per_minute_are_limited_across_its_attempts() -> None:
    answer = Reply([{"type": "text", "text": "hi"}], stop_reason="end_turn")
    with gateway_over([answer], repeat_last=True) as g:
        first, second = grant(requests_per_minute=2), grant(requests_per_minute=2, attempt="b-1")
        g.client(first).messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
        g.client(second).messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError, match="2 requests per minute") as limited:
            g.client(first).messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
        other = replace(first, factory="other", attempt="o-1")
        g.client(other).messages.create(model=MODEL, max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert len(g.fake.requests) == 3, "another factory is not held back"


def test_a_client_gone_mid_stream_is_charged_what_the_api_billed() -> None:
    hold = threading.Event()
    long = Reply([{"type": "text", "text": "word " * 400}], stop_reason="end_turn", hold=hold)
    with gateway_over([long]) as g:
        client = g.client()
        stream = client.messages.stream(model=MODEL, max_tokens=4000, messages=HI)  # type: ignore[arg-type]
        with stream as events:
            for event in events:
                if event.type == "content_block_delta":
                    break  # the agent dies here, mid-answer
        charged = threading.Event()
        g.gateway.ledger.on_charge = lambda attempt, usage: charged.set()
        assert g.fake.holding.wait(30)
        hold.set()
        assert charged.wait(60), "the gateway read the stream on to its end"
        billed = g.fake.usages[0]
        spent = g.spent()
    assert spent.usage.output_tokens == billed["output_tokens"]
    assert spent.usage.input_tokens == billed["input_tokens"]


def test_concurrent_streams_of_a_factory_are_limited() -> None:
    hold = threading.Event()
    held = Reply([{"type": "text", "text": "word " * 200}], stop_reason="end_turn", hold=hold)
    quick = Reply([{"type": "text", "text": "hi"}], stop_reason="end_turn")
    with gateway_over([held, quick]) as g:
        one = grant(concurrent_streams=1)

        def first() -> None:
            g.client(one).messages.create(
                model=MODEL, max_tokens=4000, messages=HI, stream=True
            ).close()  # type: ignore[arg-type]

        runner = threading.Thread(target=first)
        runner.start()
        assert g.fake.holding.wait(30)
        with pytest.raises(anthropic.RateLimitError, match="1 requests in flight"):
            g.client(replace(one, attempt="b-1")).messages.create(
                model=MODEL, max_tokens=10, messages=HI
            )  # type: ignore[arg-type]
        hold.set()
        runner.join(30)
        g.client(replace(one, attempt="b-1")).messages.create(
            model=MODEL, max_tokens=10, messages=HI
        )  # type: ignore[arg-type]
    assert len(g.fake.requests) == 2


def test_the_ledger_is_the_operators_to_read() -> None:
    import urllib.error
    import urllib.request

    with gateway_over([]) as g:
        agents = {"authorization": f"Bearer {mint(grant(), SIGNING)}"}
        ask = urllib.request.Request(f"{g.url}/ledger/shop/fix-add-plan-1", headers=agents)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(ask)
        refused.value.close()
        ask.headers["Authorization"] = f"Bearer {reader_token(SIGNING)}"
        with urllib.request.urlopen(ask) as answer:
            read = answer.read().decode()
    assert refused.value.code == 401, "an agent's token does not read the ledger"
    assert '"requests": 0' in read


def test_a_grant_reads_back_as_minted_and_nothing_in_it_can_change() -> None:
    given = grant(max_cost_usd=1.5, upstream="https://gw.example.test", key_secret="anthropic/key")
    assert verify(mint(given, SIGNING), SIGNING, time.time()) == given
    _, payload, signature = mint(given, SIGNING).split(".")
    richer = mint(replace(given, max_tokens=10**9), SIGNING).split(".")[1]
    with pytest.raises(GrantError):
        verify(f"afgw1.{richer}.{signature}", SIGNING, time.time())
    assert payload != richer


def test_an_attempts_grant_carries_its_limits_and_the_factorys_cap() -> None:
    from testbed.builders import factory

    from agentfactory.core.executors import Attempt
    from agentfactory.core.grants import attempt_grant
    from agentfactory.core.handoff import Limits
    from agentfactory.core.phases import Stage

    attempt = Attempt(task="fix-add", task_uid="u", namespace="shop", factory="shop",
                      stage=Stage.IMPLEMENT, attempt=2)  # fmt: skip
    gateway = {"requestsPerMinute": 30, "maxTokensPerAttempt": 5000}
    spec = factory(agents={"apiKeySecretRef": {"name": "anthropic", "key": "api-key"},
                           "baseURL": "https://llm.example.test", "gateway": gateway})  # fmt: skip
    limits = Limits(max_tokens=80_000, max_cost_usd=2.5, deadline_seconds=600)
    given = attempt_grant(attempt, spec, limits, 1000.0, with_key_secret=True)
    assert (given.attempt, given.expires, given.max_tokens, given.max_cost_usd) == (
        "fix-add-implement-2", 1000.0 + 600 + 300, 5000, 2.5)  # fmt: skip
    assert (given.requests_per_minute, given.upstream, given.key_secret) == (
        30, "https://llm.example.test", "anthropic/api-key")  # fmt: skip
    local = attempt_grant(attempt, spec, Limits(max_tokens=900), 0.0)
    assert (local.max_tokens, local.upstream, local.key_secret) == (900, None, None)
