"""A local fake of the Anthropic Messages API, served over real HTTP for the real SDK.

Faithful where the runner depends on it: `POST /v1/messages` with the key (`x-api-key`, or
`Authorization: Bearer` as SDK 2.x sends it) and `anthropic-version` required; the request
is checked the way the API checks it (roles alternate, no empty turn or empty text block,
every `tool_use` of the previous assistant turn answered by a `tool_result` in the next user
turn, no result for an unknown id, the prompt within the context window, `max_tokens` within
the model's output limit); responses are real `Message` shapes with `usage` (including
prompt-cache writes and reads where a breakpoint repeats), as one JSON body or, for
`"stream": true`, as the server-sent events the API streams (`message_start`, a block's
start, deltas and stop, `message_delta` with the stop reason and output tokens,
`message_stop`); errors are real error bodies (`rate_limit_error` 429, `api_error` 500,
`overloaded_error` 529). Error replies carry `retry-after-ms` so the SDK's own retry path runs
without slowing the tests.

A script is a list of steps consumed one per request: a `Reply`, a `Fail`, or a function of
the request body returning either (for loops and replies that depend on what was sent).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

API_KEY = "test-key-not-a-secret"
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "not_found_error", 429: "rate_limit_error", 500: "api_error",
                529: "overloaded_error"}  # fmt: skip
#: The context window of every model the fake serves, in its tokens (`tokens`).
CONTEXT_WINDOW = 200_000
#: The most output tokens a request may ask for, by model family (the API's limits).
OUTPUT_LIMITS = {"claude-opus-4": 32_000, "claude-sonnet-4": 64_000, "claude-haiku-4": 64_000,
                 "claude-3-5-haiku": 8_192}  # fmt: skip
_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
#: How many characters each streamed delta carries (so a block really arrives in pieces).
DELTA_CHARS = 48


@dataclass
class Reply:
    """One assistant message."""

    content: list[dict[str, Any]]
    stop_reason: str = "tool_use"
    hold: threading.Event | None = None
    """Streamed: stop after the first delta until this is set (`FakeAnthropic.holding` is
    set meanwhile), as a long answer would, so a test can act mid-stream."""


@dataclass
class Fail:
    """One error response."""

    status: int
    message: str = "injected by the fake"


Step = Reply | Fail | Callable[[dict[str, Any]], "Reply | Fail"]


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    """A tool_use block (the id is filled in by the fake)."""
    return {"type": "tool_use", "name": name, "input": arguments}


def tokens(value: Any) -> int:
    """A stable stand-in for the tokenizer: four characters a token."""
    return max(1, len(json.dumps(value)) // 4)


@dataclass
class FakeAnthropic:
    """The fake server. Use as a context manager; `url` is the SDK's base URL."""

    script: list[Step]
    repeat_last: bool = False
    context_window: int = CONTEXT_WINDOW
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    """The keys whose models were listed (`GET /v1/models` answered 200)."""
    usages: list[dict[str, int]] = field(default_factory=list)
    """The usage of every answered request, in order."""
    streamed: list[bool] = field(default_factory=list)
    """Whether each answered request was answered as a stream, in order."""
    paths: list[str] = field(default_factory=list)
    """Every path asked for, in order (what a client calls besides the Messages API)."""
    keys: list[str] = field(default_factory=list)
    """The key every Messages API request came with, in order."""
    holding: threading.Event = field(default_factory=threading.Event)
    """Set while a stream waits on its reply's `hold`."""
    _holds: dict[str, threading.Event] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _cached: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeAnthropic:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.paths.append(f"GET {self.path}")
                self._answer(*fake.models(self.path, dict(self.headers)))

            def do_HEAD(self) -> None:
                fake.paths.append(f"HEAD {self.path}")
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                fake.paths.append(f"POST {self.path}")
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, body, headers = fake.handle(self.path, dict(self.headers), raw)
                if (
                    status == 200
                    and body.get("type") == "message"
                    and json.loads(raw).get("stream")
                ):
                    self._stream(body)
                else:
                    self._answer(status, body, headers)

            def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", f"req_{len(fake.requests):06d}")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, message: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("request-id", f"req_{len(fake.requests):06d}")
                self.send_header("connection", "close")
                self.end_headers()
                hold = fake._holds.pop(message["id"], None)
                for event in stream_events(message):
                    self.wfile.write(
                        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                    )
                    self.wfile.flush()
                    if hold is not None and event["type"] == "content_block_delta":
                        fake.holding.set()
                        hold.wait()
                        fake.holding.clear()
                        hold = None
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -- the API -----------------------------------------------------------------------

    def _refused(
        self, path: str, route: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """What the API answers a request it will not serve: an unknown route, a key it does
        not know, no version header. None: serve it."""
        lowered = {k.lower(): v for k, v in headers.items()}
        if path.split("?")[0].rstrip("/") != route:
            return self._error(404, f"no route {path}")
        bearer = lowered.get("authorization", "").removeprefix("Bearer ")
        if route == "/v1/messages":
            self.keys.append(lowered.get("x-api-key") or bearer)
        if API_KEY not in (lowered.get("x-api-key"), bearer):
            return self._error(401, "invalid x-api-key")
        if "anthropic-version" not in lowered:
            return self._error(400, "anthropic-version header is required")
        return None

    def models(
        self, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """`GET /v1/models`, as the real API pages it: what a key may use."""
        if (refused := self._refused(path, "/v1/models", headers)) is not None:
            return refused
        self.listed.append(API_KEY)
        model = {"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6",
                 "created_at": "2026-02-17T00:00:00Z"}  # fmt: skip
        return 200, {"data": [model], "has_more": False, "first_id": model["id"],
                     "last_id": model["id"]}, {}  # fmt: skip

    def handle(
        self, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if (refused := self._refused(path, "/v1/messages", headers)) is not None:
            return refused
        body = json.loads(raw)
        self.requests.append(body)
        problem = validate_request(body) or self._too_large(body)
        if problem:
            return self._error(400, problem)
        if not self.script:
            return self._error(500, "the fake's script is exhausted")
        step = self.script[0] if self.repeat_last and len(self.script) == 1 else self.script.pop(0)
        if callable(step):
            step = step(body)
        if isinstance(step, Fail):
            return self._error(step.status, step.message)
        return self._reply(body, step)

    def _too_large(self, body: dict[str, Any]) -> str | None:
        """The API's refusals of size: more output asked for than the model may write, a
        prompt over the context window."""
        model = str(body["model"])
        limit = next((n for family, n in OUTPUT_LIMITS.items() if model.startswith(family)),
                     64_000)  # fmt: skip
        if int(body["max_tokens"]) > limit:
            return (f"max_tokens: {body['max_tokens']} > {limit}, which is the maximum allowed"
                    f" number of output tokens for {model}")  # fmt: skip
        prompt = sum(self._caching(body, remember=False))
        if prompt > self.context_window:
            return f"prompt is too long: {prompt} tokens > {self.context_window} maximum"
        return None

    def _error(self, status: int, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.statuses.append(status)
        kind = _ERROR_TYPES.get(status, "api_error")
        retry = {"retry-after-ms": "5"} if status in (429, 500, 529) else {}
        return status, {"type": "error", "error": {"type": kind, "message": message}}, retry

    def _caching(self, body: dict[str, Any], *, remember: bool = True) -> tuple[int, int, int]:
        """(cache read, cache write, uncached) input tokens of a request, as prompt caching
        counts them: the prompt is tools, system, then the messages' blocks; each block marked
        `cache_control` is a breakpoint. At the last one, the longest prefix an earlier
        request wrote (looked for up to 20 blocks back) is read, and the rest up to the
        breakpoint written; what follows it is not cached."""
        system = body.get("system") or []
        blocks: list[Any] = [*body.get("tools", []),
                             *([{"type": "text", "text": system}] if isinstance(system, str)
                               else system)]  # fmt: skip
        for message in body["messages"]:
            content = message["content"]
            blocks += [{"type": "text", "text": content}] if isinstance(content, str) else content
        plain = [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]
        total = tokens(plain)
        marks = [i for i, b in enumerate(blocks) if "cache_control" in b]
        if not marks:
            return 0, 0, total
        last = marks[-1]
        read = 0
        for end in range(last + 1, max(0, last - 20), -1):
            if json.dumps(plain[:end]) in self._cached:
                read = tokens(plain[:end])
                break
        for mark in marks if remember else []:
            self._cached.add(json.dumps(plain[: mark + 1]))
        written = max(0, tokens(plain[: last + 1]) - read)
        return read, written, max(0, total - read - written)

    def _reply(
        self, body: dict[str, Any], step: Reply
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.statuses.append(200)
        n = len(self.requests)
        content = []
        for index, block in enumerate(step.content):
            block = dict(block)
            if block["type"] == "tool_use":
                block.setdefault("id", f"toolu_{n:04d}_{index:02d}")
            content.append(block)
        read, creation, rest = self._caching(body)
        usage = {
            "input_tokens": rest,
            "output_tokens": tokens(content),
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
        }
        self.usages.append(usage)
        self.streamed.append(bool(body.get("stream")))
        message = {
            "id": f"msg_fake{n:020d}", "type": "message", "role": "assistant",
            "model": body["model"], "content": content, "stop_reason": step.stop_reason,
            "stop_sequence": None, "usage": usage,
        }  # fmt: skip
        # Every answer, in every test, is one the SDK's own types take as they are.
        Message.model_validate(message, strict=True)
        if step.hold is not None:
            self._holds[message["id"]] = step.hold
        return 200, message, {}


def stream_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """*message* as the API streams it: its start (no content yet, the input usage), each
    block started, sent in deltas and stopped, then the stop reason with the output usage."""
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}  # fmt: skip
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opened = {**block, "input": {}}
            text, delta = json.dumps(block["input"]), ("input_json_delta", "partial_json")
        elif block["type"] == "text":
            opened, text, delta = {**block, "text": ""}, block["text"], ("text_delta", "text")
        else:
            raise ValueError(f"the fake cannot stream a {block['type']} block")
        events.append({"type": "content_block_start", "index": index, "content_block": opened})
        for at in range(0, len(text), DELTA_CHARS):
            piece = {"type": delta[0], delta[1]: text[at : at + DELTA_CHARS]}
            events.append({"type": "content_block_delta", "index": index, "delta": piece})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
    events.append({"type": "message_stop"})
    for event in events:
        if event["type"] != "ping":  # the SDK skips pings, which have no type of their own
            _EVENT.validate_python(event, strict=True)
    return events


def validate_request(body: dict[str, Any]) -> str | None:
    """What the real API would reject in *body* (a 400), or None."""
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        return "messages: first message must use the user role"
    pending: set[str] = set()
    for index, message in enumerate(messages):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            return f"messages.{index}: roles must alternate between user and assistant"
        final_assistant = index == len(messages) - 1 and message["role"] == "assistant"
        if not message["content"] and not final_assistant:
            return (f"messages.{index}: all messages must have non-empty content except for"
                    " the optional final assistant message")  # fmt: skip
        blocks = message["content"] if isinstance(message["content"], list) else []
        for position, block in enumerate(blocks):
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{index}.content.{position}: text content blocks must be non-empty"
        if message["role"] == "user":
            answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
            if answered - pending:
                return (
                    f"messages.{index}: tool_result for unknown tool_use ids {answered - pending}"
                )
            if pending - answered:
                return f"messages.{index}: tool_use ids {pending - answered} have no tool_result"
            pending = set()
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None
