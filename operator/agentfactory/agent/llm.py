"""Where answers come from: the anthropic SDK (any Anthropic-compatible base URL), or a
recorded replay for demos and offline runs, which every result labels as a replay.

Transient API errors (429, 5xx, 529 overloaded) are retried with backoff by the SDK itself
(`max_retries`); what is left after that reaches the runner as :class:`ModelError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anthropic
from anthropic.types import Message

if TYPE_CHECKING:
    from pathlib import Path


class ModelError(Exception):
    """The model could not be reached or refused, after the SDK's retries."""


class ModelBudgetError(ModelError):
    """The gateway refused the call: the attempt's budget is spent (402)."""


class ModelKeyError(ModelError):
    """The model API refused the key itself (401, 403): the factory's set-up, which no retry
    of the stage mends."""


def said_by_the_api(exc: anthropic.APIStatusError) -> str:
    """The API's own error message, not the SDK's rendering of the whole body."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    message = error.get("message") if isinstance(error, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    if isinstance(message, str) and message:
        return f"{kind}: {message}" if isinstance(kind, str) else message
    return str(exc.message)


class Provider(Protocol):
    """Makes one Messages API call."""

    replay: bool

    def create(self, *, timeout: float, **request: Any) -> Message: ...


@dataclass
class AnthropicProvider:
    """The real Messages API through the anthropic SDK."""

    api_key: str | None = None
    base_url: str | None = None
    max_retries: int = 4
    replay: bool = False
    _client: anthropic.Anthropic | None = field(default=None, init=False, repr=False)

    def create(self, *, timeout: float, **request: Any) -> Message:
        """One call, streamed: the SDK refuses to wait for a whole answer that may take longer
        than ten minutes (about 21,000 output tokens), and a stream shows progress."""
        if self._client is None:
            self._client = anthropic.Anthropic(
                api_key=self.api_key, base_url=self.base_url, max_retries=self.max_retries
            )
        try:
            with self._client.messages.stream(timeout=timeout, **request) as stream:
                message: Message = stream.get_final_message()
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise ModelKeyError(
                f"the model API refused the key ({exc.status_code} {said_by_the_api(exc)}); put"
                " a valid key in the Secret spec.agents.apiKeySecretRef names (locally:"
                " ANTHROPIC_API_KEY)"
            ) from exc
        except anthropic.APIStatusError as exc:
            if exc.status_code == 402:
                raise ModelBudgetError(said_by_the_api(exc)) from exc
            raise ModelError(f"the API answered {exc.status_code}: {said_by_the_api(exc)}") from exc
        except anthropic.APIConnectionError as exc:
            raise ModelError(f"the API could not be reached: {exc}") from exc
        return message


@dataclass
class ReplayProvider:
    """Answers from a recorded script: a JSON list of Messages API responses, in order."""

    script: list[dict[str, Any]]
    replay: bool = True
    position: int = 0

    @classmethod
    def load(cls, path: Path) -> ReplayProvider:
        return cls(script=json.loads(path.read_text(encoding="utf-8")))

    def create(self, *, timeout: float, **request: Any) -> Message:
        del timeout, request
        if self.position >= len(self.script):
            raise ModelError(f"the replay script has only {len(self.script)} responses")
        response = self.script[self.position]
        self.position += 1
        return Message.model_validate(response)
