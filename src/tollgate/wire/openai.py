"""The canonical request and response: OpenAI Chat Completions, kept as parsed JSON with unknown fields intact.

Validation here is deliberately shallow and fast: it checks exactly what the gateway relies on (types of
the fields it reads) and leaves the rest to the provider, so that a field Tollgate does not know survives
the trip untouched.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import orjson

from tollgate.errors import InvalidRequestError
from tollgate.types import JSONObject, JSONValue

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(slots=True)
class Usage:
    """Token counts of one request, as the provider reported them (``estimated`` when it did not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> JSONObject:
        out: JSONObject = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out

    @classmethod
    def from_openai(cls, raw: JSONValue) -> Usage | None:
        """Read an OpenAI ``usage`` object; ``None`` when absent or malformed (never raises)."""
        if not isinstance(raw, dict):
            return None
        prompt = raw.get("prompt_tokens")
        completion = raw.get("completion_tokens", 0)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        cached = 0
        details = raw.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            cached = details["cached_tokens"]  # type: ignore[assignment]
        return cls(prompt, completion, cached)


@dataclass(slots=True)
class ChatRequest:
    """A validated chat request in the canonical (OpenAI) shape.

    ``body`` is the client's JSON object; adapters copy before changing it, so the same request can
    be sent to several deployments (retries, fallbacks) unchanged.
    """

    body: JSONObject
    model: str
    stream: bool
    include_usage: bool = False
    raw: bytes | None = None  # the client's exact bytes, for same-format pass-through
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> list[JSONObject]:
        return self.body["messages"]  # type: ignore[return-value]


def parse_json_object(raw: bytes) -> JSONObject:
    """Decode a request body that must be a JSON object, with a client-facing error otherwise."""
    if not raw:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    return value


def _require_model(body: JSONObject) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    return model


def _check_type(body: JSONObject, name: str, kinds: tuple[type, ...], label: str) -> None:
    value = body.get(name)
    if value is None:
        return
    # bool is an int subclass; a JSON true is never a valid number here.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidRequestError(f"'{name}' must be {label}.", param=name)


_NUMBER = (int, float)

# The fields the gateway reads, with the JSON type each must have (only present ones are checked).
_TYPED: dict[str, tuple[tuple[type, ...], str]] = {
    "stream": ((bool,), "a boolean"),
    "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"),
    "n": ((int,), "an integer"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "tools": ((list,), "an array"),
    "response_format": ((dict,), "an object"),
    "stream_options": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "user": ((str,), "a string"),
}


def _validate_message(index: int, msg: JSONValue) -> None:
    where = f"messages[{index}]"
    if not isinstance(msg, dict):
        raise InvalidRequestError(f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = msg.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(
            f"'{where}.role' must be one of {', '.join(sorted(_ROLES))}; got {role!r}.", param=f"{where}.role"
        )
    content = msg.get("content")
    if content is None:
        if role == "assistant" and (msg.get("tool_calls") or msg.get("function_call")):
            return
        if role == "assistant":
            return
        raise InvalidRequestError(f"'{where}.content' is required for role '{role}'.", param=f"{where}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequestError(
            f"'{where}.content' must be a string or an array of content parts.", param=f"{where}.content"
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequestError(
                f"'{where}.content[{j}]' must be an object with a 'type'.", param=f"{where}.content[{j}]"
            )


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate an OpenAI Chat Completions request body."""
    body = parse_json_object(raw)
    req = chat_request_from_body(body)
    req.raw = raw
    return req


def chat_request_from_body(body: JSONObject) -> ChatRequest:
    model = _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' is required and must be a non-empty array.", param="messages")
    for i, msg in enumerate(messages):
        _validate_message(i, msg)
    for name in body.keys() & _TYPED.keys():
        kinds, label = _TYPED[name]
        _check_type(body, name, kinds, label)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str | list):
        raise InvalidRequestError("'stop' must be a string or an array of strings.", param="stop")
    n = body.get("n")
    if isinstance(n, int) and not 1 <= n <= 128:
        raise InvalidRequestError("'n' must be between 1 and 128.", param="n")
    stream = body.get("stream") is True
    opts = body.get("stream_options")
    include_usage = stream and isinstance(opts, dict) and opts.get("include_usage") is True
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage)


def max_output_tokens(body: JSONObject) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value if isinstance(value, int) else None


def text_of(content: JSONValue) -> str:
    """The text of a message content (string or parts); non-text parts contribute nothing."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in parts if isinstance(t, str))
    return ""


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def chat_completion(
    *,
    id: str,
    model: str,
    choices: list[JSONValue],
    usage: Usage | None,
    created: int | None = None,
    system_fingerprint: str | None = None,
) -> JSONObject:
    out: JSONObject = {
        "id": id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    if system_fingerprint is not None:
        out["system_fingerprint"] = system_fingerprint
    return out


def chunk(
    *,
    id: str,
    model: str,
    created: int,
    delta: JSONObject | None = None,
    finish_reason: str | None = None,
    index: int = 0,
    usage: Usage | None = None,
) -> JSONObject:
    """One ``chat.completion.chunk``; with ``usage`` and no delta it is the final usage-only chunk."""
    out: JSONObject = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    if delta is None and usage is not None:
        out["choices"] = []
    else:
        out["choices"] = [{"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
    if usage is not None:
        out["usage"] = usage.to_openai()
    return out
