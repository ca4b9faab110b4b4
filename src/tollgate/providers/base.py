"""The provider contract: sans-I/O translators between the canonical (OpenAI) shapes and one wire format.

An adapter is built once per deployment (it holds the compiled URL and credentials) and is stateless;
everything that lives for one request (a stream decoder) is created fresh per request. Adapters never
mutate the caller's request, so one request can be sent to several deployments (retries, fallbacks).
The core owns the HTTP transport; adapters only describe requests and read responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson

from tollgate.errors import (
    InvalidRequestError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
)
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage

WireFormat = Literal["openai", "anthropic", "gemini", "ollama"]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect, to the first response byte (and between stream reads), and in total."""

    connect: float = 10.0
    read: float = 120.0
    total: float = 600.0
    first_token: float | None = None  # streams: from sending to the first content chunk; None: only ``read``


@dataclass(frozen=True, slots=True)
class Deployment:
    """One concrete target: a configured provider and the model name it knows."""

    provider: str  # the configured provider's name, e.g. "openai" or "azure-eu"
    provider_type: str  # the adapter, e.g. "openai", "azure", "anthropic"
    model: str  # the upstream model id (for Azure: the deployment name)
    base_url: str
    api_key: str = field(default="", repr=False)
    api_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    drop_unsupported_params: bool = False

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


class StreamDecoder(Protocol):
    """Feed upstream bytes in any split; get canonical ``chat.completion.chunk`` objects out."""

    usage: Usage | None
    finish_reason: str | None

    def feed(self, data: bytes) -> list[JSONObject]: ...

    def close(self) -> list[JSONObject]:
        """End of upstream body. Raises ``ProviderProtocolError`` if the stream ended before it finished."""
        ...


class ProviderAdapter(Protocol):
    """What the core needs from a provider. ``wire_format`` enables same-format pass-through."""

    wire_format: WireFormat
    deployment: Deployment

    def chat_request(self, req: ChatRequest) -> UpstreamRequest: ...

    def parse_chat_response(self, body: bytes, req: ChatRequest) -> tuple[JSONObject, Usage | None]: ...

    def chat_stream_decoder(self, req: ChatRequest) -> StreamDecoder: ...

    def embeddings_request(self, body: JSONObject) -> UpstreamRequest: ...

    def parse_embeddings_response(self, body: bytes, request_body: JSONObject) -> tuple[JSONObject, Usage | None]: ...

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError: ...


class RelayDecoder(Protocol):
    """Feed upstream bytes in the provider's format; get the bytes to forward to a client of that format.

    Reads only what the gateway needs (usage, finish reason, errors) and validates the framing."""

    usage: Usage | None
    finish_reason: str | None

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes:
        """End of upstream body; raises ``ProviderProtocolError`` if the stream ended before it finished."""
        ...


class RelayAdapter(Protocol):
    """Optional: stream to a client of the provider's own format without decoding every event."""

    wire_format: WireFormat

    def relay_stream_decoder(self, req: ChatRequest) -> RelayDecoder: ...


class PassThroughAdapter(Protocol):
    """Optional: forward a client body in the provider's own format untouched (fields we do not know survive)."""

    def passthrough_request(self, path: str, body: JSONObject, raw: bytes | None) -> UpstreamRequest: ...


STREAM_EVENT = "sent a stream event"


def load_json_object(data: bytes | str, provider: str, what: str = "returned a body") -> JSONObject:
    """Parse what a provider sent that must be a JSON object; anything else is a protocol error."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderProtocolError(f"Provider '{provider}' {what} that is not JSON.", provider=provider) from None
    if not isinstance(value, dict):
        raise ProviderProtocolError(f"Provider '{provider}' {what} that is not a JSON object.", provider=provider)
    return value


def tool_arguments(raw: JSONValue, param: str) -> JSONObject:
    """Tool-call arguments as an object: OpenAI carries them as a JSON string, most other providers want the
    object itself. Empty is ``{}``; anything that is not a JSON object is a 400 naming ``param``."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    raise InvalidRequestError(f"'{param}' must be a JSON object encoded as a string.", param=param)


def upstream_error_message(body: bytes) -> str:
    """Best-effort human message from a provider's error body (OpenAI, Anthropic, Gemini and Ollama shapes)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:300].decode("utf-8", "replace").strip()
        return text or "no error details"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return str(data["message"])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return upstream_error_message(orjson.dumps(data[0]))
    return "no error details"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds; HTTP dates are treated as absent)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


# What providers say when a request is longer than the model's context window, or their content filter
# refused the prompt (OpenAI and Azure codes; Anthropic's and others' messages). Compared lower-cased.
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_WORDS = (
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "too many tokens",
    "exceeds the maximum number of tokens",
    "input is too long",
)
_POLICY_CODES = frozenset({"content_filter", "content_policy_violation", "responsibleaipolicyviolation"})
_POLICY_WORDS = ("content management policy", "content policy", "safety system")


def refusal_code(body: bytes, detail: str) -> str | None:
    """``context_length_exceeded`` or ``content_policy_violation`` when a 400 says so, else None."""
    code = ""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        found = data["error"].get("code")
        code = found.lower() if isinstance(found, str) else ""
    text = detail.lower()
    if code in _CONTEXT_CODES or any(words in text for words in _CONTEXT_WORDS):
        return "context_length_exceeded"
    if code in _POLICY_CODES or any(words in text for words in _POLICY_WORDS):
        return "content_policy_violation"
    return None


def classify_http_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
    """Map a provider's HTTP error to the gateway's error tree (shared by every adapter).

    The provider's own message is kept for 4xx errors about the request (the caller needs it to fix the
    request) but never for authentication failures: those concern the gateway's credentials, not the caller.
    """
    detail = upstream_error_message(body)
    if status == 429:
        return ProviderRateLimitError(
            f"Provider '{provider}' is rate limiting requests: {detail}",
            provider=provider,
            upstream_status=status,
            retry_after=retry_after_seconds(headers),
        )
    if status in (401, 403):
        return ProviderAuthError(
            f"Provider '{provider}' rejected the gateway's credentials (HTTP {status}); "
            "the gateway operator must check this provider's API key.",
            provider=provider,
            upstream_status=status,
        )
    if status in (408, 504):
        return ProviderTimeoutError(
            f"Provider '{provider}' timed out (HTTP {status}).", provider=provider, upstream_status=status
        )
    if status >= 500:
        return ProviderUnavailableError(
            f"Provider '{provider}' failed with HTTP {status}: {detail}",
            provider=provider,
            upstream_status=status,
        )
    err = ProviderBadRequestError(
        f"Provider '{provider}' rejected the request (HTTP {status}): {detail}",
        provider=provider,
        upstream_status=status,
    )
    if status == 400:
        err.code = refusal_code(body, detail)
    if status == 404:
        err.status = 404
        err.code = "model_not_found" if "model" in detail.lower() else "not_found"
    elif status == 413:
        err.status = 413
    elif status == 422:
        err.status = 400
    return err


def check_params(
    body: JSONObject,
    unsupported: Mapping[str, str],
    deployment: Deployment,
) -> JSONObject:
    """Reject (400 naming the parameter) or drop parameters the target cannot honour.

    ``unsupported`` maps a parameter name to the reason; a parameter set to null counts as absent.
    """
    if not unsupported:
        return body
    present = [name for name in unsupported if body.get(name) is not None]
    if not present:
        return body
    if not deployment.drop_unsupported_params:
        name = present[0]
        raise UnsupportedParameterError(
            f"Parameter '{name}' is not supported by provider '{deployment.provider}' "
            f"(model '{deployment.model}'): {unsupported[name]}. Remove it, or set "
            "'drop_unsupported_params: true' for this provider to drop it silently.",
            param=name,
        )
    return {k: v for k, v in body.items() if k not in unsupported}
