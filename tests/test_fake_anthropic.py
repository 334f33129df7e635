"""The fake Messages API is as strict as the real one: every refusal is sent through the real
anthropic SDK and arrives as the SDK's own error, and every answer, whole or streamed, parses
as the SDK's own types."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter
from testbed.fakes.anthropic_api import API_KEY, FakeAnthropic, Reply, tool

MODEL = "claude-sonnet-4-6"
EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
ANSWER = Reply([{"type": "text", "text": "I will read the file first, then change it." * 3},
                tool("read_file", path="shop/cart.py")])  # fmt: skip


def post(
    fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """POST *body* to the Messages API without the SDK: (status, headers, text)."""
    asked = urllib.request.Request(
        f"{fake.url}/v1/messages", data=json.dumps(body).encode(), method="POST",
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        if headers is None else headers)  # fmt: skip
    try:
        with urllib.request.urlopen(asked) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read().decode()


def client(fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=API_KEY, base_url=fake.url, max_retries=0)


def said(messages: list[dict[str, Any]], **request: Any) -> str:
    """What the fake answers *messages* with, as the SDK raised it (a 400). Streamed: the SDK
    refuses to wait for a whole answer as long as a large `max_tokens` may take."""
    with (
        FakeAnthropic([ANSWER]) as fake,
        pytest.raises(anthropic.BadRequestError) as refused,
        client(fake).messages.stream(
            model=request.pop("model", MODEL),
            max_tokens=request.pop("max_tokens", 1000),
            messages=messages,  # type: ignore[arg-type]
            **request,
        ),
    ):
        pass
    assert refused.value.status_code == 400
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


USE = {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.py"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "text"}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param([{"role": "user", "content": "hi"}, {"role": "assistant", "content": []},
                      {"role": "user", "content": "go on"}],
                     "messages.1: all messages must have non-empty content", id="empty-content"),
        pytest.param([{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}],
                     "messages.1: roles must alternate", id="roles-not-alternating"),
        pytest.param([{"role": "assistant", "content": "hello"}],
                     "first message must use the user role", id="assistant-first"),
        pytest.param([{"role": "user", "content": [RESULT]}],
                     "tool_result for unknown tool_use ids", id="result-without-use"),
        pytest.param([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [USE]},
                      {"role": "user", "content": "what now?"}],
                     "tool_use ids {'toolu_1'} have no tool_result", id="use-without-result"),
        pytest.param([{"role": "user", "content": [{"type": "text", "text": ""}]}],
                     "text content blocks must be non-empty", id="empty-text-block"),
    ],
)  # fmt: skip
def test_the_fake_refuses_a_malformed_conversation(
    messages: list[dict[str, Any]], expected: str
) -> None:
    assert expected in said(messages)


def test_the_fake_refuses_a_prompt_over_the_context_window() -> None:
    with FakeAnthropic([ANSWER], context_window=1000) as fake:
        small = [{"role": "user", "content": "hi " * 100}]
        assert client(fake).messages.create(model=MODEL, max_tokens=10, messages=small)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError,
                           match=r"prompt is too long: \d+ tokens > 1000 maximum"):  # fmt: skip
            large = [{"role": "user", "content": "hi " * 2000}]
            client(fake).messages.create(model=MODEL, max_tokens=10, messages=large)  # type: ignore[arg-type]
    assert fake.statuses == [200, 400]


def test_the_fake_refuses_more_output_than_the_model_may_write() -> None:
    message = said([{"role": "user", "content": "hi"}], max_tokens=64_001)
    assert message == (f"max_tokens: 64001 > 64000, which is the maximum allowed number of output"
                       f" tokens for {MODEL}")  # fmt: skip
    opus = said([{"role": "user", "content": "hi"}], model="claude-opus-4-1", max_tokens=40_000)
    assert opus.startswith("max_tokens: 40000 > 32000")


def test_a_streamed_answer_is_the_same_message_as_a_whole_one() -> None:
    asked = [{"role": "user", "content": "change the cart"}]
    with FakeAnthropic([ANSWER, ANSWER]) as fake:
        whole = client(fake).messages.create(model=MODEL, max_tokens=1000, messages=asked)  # type: ignore[arg-type]
        with client(fake).messages.stream(model=MODEL, max_tokens=1000, messages=asked) as stream:  # type: ignore[arg-type]
            deltas = [e for e in stream if e.type == "content_block_delta"]
            streamed = stream.get_final_message()
    assert fake.streamed == [False, True]
    assert len(deltas) > 2, "the blocks arrive in pieces"
    assert [b.model_dump(exclude={"parsed_output", "id"}) for b in streamed.content] == [
        b.model_dump(exclude={"id"}) for b in whole.content]  # fmt: skip
    assert streamed.content[1].type == "tool_use"
    assert streamed.content[1].input == {"path": "shop/cart.py"}
    assert (streamed.stop_reason, streamed.usage.output_tokens) == (
        "tool_use", whole.usage.output_tokens)  # fmt: skip


def test_every_event_of_a_stream_parses_as_the_sdks_own_types() -> None:
    # Read the raw server-sent events, without the SDK's accumulating parser in between.
    with FakeAnthropic([ANSWER]) as fake:
        asked = [{"role": "user", "content": "hi"}]
        status, headers, text = post(
            fake, {"model": MODEL, "max_tokens": 1000, "stream": True, "messages": asked}
        )
    assert (status, headers["content-type"]) == (200, "text/event-stream")
    frames = [f for f in text.split("\n\n") if f.strip()]
    kinds = []
    for frame in frames:
        name, data = frame.split("\n")
        if name == "event: ping":  # the SDK's stream skips pings, which have no type of theirs
            kinds.append("ping")
            continue
        event = EVENTS.validate_python(json.loads(data.removeprefix("data: ")), strict=True)
        assert name == f"event: {event.type}"
        kinds.append(event.type)
    assert kinds[:2] == ["message_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2


def test_every_whole_answer_parses_as_the_sdks_message() -> None:
    with FakeAnthropic([ANSWER, Reply([{"type": "text", "text": "no"}], stop_reason="refusal"),
                        Reply([{"type": "text", "text": "half"}], stop_reason="pause_turn")]
                       ) as fake:  # fmt: skip
        asked = {"model": MODEL, "max_tokens": 1000,
                 "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        raw = [json.loads(post(fake, asked)[2]) for _ in range(3)]
    messages = [Message.model_validate(body, strict=True) for body in raw]
    assert [m.stop_reason for m in messages] == ["tool_use", "refusal", "pause_turn"]


def test_the_fake_refuses_a_request_without_a_key_or_version() -> None:
    with FakeAnthropic([ANSWER]) as fake:
        with pytest.raises(anthropic.AuthenticationError, match=re.escape("invalid x-api-key")):
            wrong = anthropic.Anthropic(api_key="wrong", base_url=fake.url, max_retries=0)
            wrong.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        status, _, text = post(fake, {}, headers={"x-api-key": API_KEY})
    assert status == 400
    assert json.loads(text)["error"]["message"] == "anthropic-version header is required"
