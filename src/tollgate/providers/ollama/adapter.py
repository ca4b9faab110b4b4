"""Ollama's native API: ``POST {base_url}/api/chat`` (NDJSON streams) and ``POST {base_url}/api/embed``.

The native API rather than Ollama's OpenAI-compatible ``/v1`` is used because only it takes the model
options (``num_predict``, ``seed`` ...), JSON-schema ``format`` and base64 ``images`` on every Ollama
version, and reports token counts on every answer.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping

import orjson

from tollgate.errors import (
    InvalidRequestError,
    ProviderProtocolError,
    UnsupportedParameterError,
    UpstreamError,
)
from tollgate.providers.base import Deployment, UpstreamRequest, WireFormat, check_params, classify_http_error
from tollgate.providers.ollama.decode import OllamaStreamDecoder, load_object, parse_chat
from tollgate.providers.ollama.messages import convert_messages
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage, max_output_tokens

_JSON = "application/json"

UNSUPPORTED: Mapping[str, str] = {
    "n": "Ollama returns one choice per request",
    "logprobs": "Ollama's chat API does not return log probabilities",
    "top_logprobs": "Ollama's chat API does not return log probabilities",
    "logit_bias": "Ollama has no logit bias option",
    "audio": "Ollama does not produce audio",
    "prediction": "Ollama has no predicted outputs",
}

# OpenAI sampling parameter → Ollama ``options`` key (same meaning and range).
_OPTIONS: tuple[tuple[str, str], ...] = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)


def ollama_base_url(base_url: str) -> str:
    """The server root: users often paste the OpenAI-compatible ``…/v1`` URL or the ``…/api`` prefix."""
    base = base_url.rstrip("/")
    for suffix in ("/v1", "/api"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _defaults_removed(body: JSONObject) -> JSONObject:
    """The body without parameters set to the one value Ollama does honour (``n: 1``, ``logprobs: false``)."""
    return {k: v for k, v in body.items() if not ((k == "n" and v == 1) or (k == "logprobs" and v is False))}


def _options(body: JSONObject) -> JSONObject:
    """Ollama's ``options``: any the client sent in Ollama's own terms, overridden by the OpenAI ones."""
    extra = body.get("options")
    options: JSONObject = dict(extra) if isinstance(extra, dict) else {}
    for name, key in _OPTIONS:
        if body.get(name) is not None:
            options[key] = body[name]
    limit = max_output_tokens(body)
    if limit is not None:
        options["num_predict"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and stop:
        options["stop"] = stop
    return options


def _format(body: JSONObject) -> JSONValue:
    """``response_format`` → ``format``: ``"json"`` for any JSON, the schema itself for a JSON schema."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else "json"
    if kind in (None, "text"):
        return None
    raise InvalidRequestError(f"'response_format.type' {kind!r} is not supported.", param="response_format")


class OllamaAdapter:
    """No authentication by default (a local server); ``Authorization: Bearer`` when an API key is set."""

    wire_format: WireFormat = "ollama"

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._base = ollama_base_url(deployment.base_url)
        headers = {"content-type": _JSON, "accept": _JSON}
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        headers.update(deployment.headers)
        self._headers = headers

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        provider = self.deployment.provider
        body = check_params(_defaults_removed(req.body), UNSUPPORTED, self.deployment)
        out: JSONObject = {
            "model": self.deployment.model,
            "messages": convert_messages(req.messages, provider),
            # Ollama streams unless told otherwise, so the choice is always explicit.
            "stream": req.stream,
        }
        options = _options(body)
        if options:
            out["options"] = options
        fmt = _format(body)
        if fmt is not None:
            out["format"] = fmt
        tools = self._tools(body)
        if tools:
            out["tools"] = tools
        think = self._think(body)
        if think is not None:
            out["think"] = think
        if body.get("keep_alive") is not None:
            out["keep_alive"] = body["keep_alive"]  # Ollama's own knob, passed through for its users
        return UpstreamRequest("POST", f"{self._base}/api/chat", self._headers, orjson.dumps(out))

    def _tools(self, body: JSONObject) -> list[JSONValue]:
        """OpenAI function tools go as they are; ``tool_choice`` is honoured where Ollama can honour it."""
        tools = body.get("tools")
        if not isinstance(tools, list) or not tools:
            return []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type", "function") != "function":
                raise UnsupportedParameterError(
                    f"'tools[{i}]': provider '{self.deployment.provider}' supports only function tools.",
                    param=f"tools[{i}]",
                )
        # parallel_tool_calls is not forwarded: Ollama has no such switch, and refusing it would break every
        # Anthropic client that sets disable_parallel_tool_use; at worst the client gets several calls.
        choice = body.get("tool_choice")
        if choice is None or choice == "auto":
            return tools
        if choice == "none":
            return []  # the only way to keep an Ollama model from calling tools is not to offer them
        if not self.deployment.drop_unsupported_params:
            raise UnsupportedParameterError(
                f"'tool_choice' {orjson.dumps(choice).decode()} is not supported by provider "
                f"'{self.deployment.provider}': Ollama cannot force a tool call. Remove it, or set "
                "'drop_unsupported_params: true' for this provider.",
                param="tool_choice",
            )
        fn = choice.get("function") if isinstance(choice, dict) else None
        wanted = fn.get("name") if isinstance(fn, dict) else None
        if wanted is None:
            return tools
        # Dropping a forced choice: offering only the named tool is the closest Ollama gets.
        kept: list[JSONValue] = []
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(fn, dict) and fn.get("name") == wanted:
                kept.append(tool)
        return kept

    @staticmethod
    def _think(body: JSONObject) -> JSONValue:
        if body.get("think") is not None:
            return body["think"]
        effort = body.get("reasoning_effort")
        if not isinstance(effort, str):
            return None
        return effort not in ("none", "minimal")

    def parse_chat_response(self, body: bytes, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        data = load_object(body, self.deployment.provider)
        return parse_chat(data, self.deployment.model, self.deployment.provider)

    def chat_stream_decoder(self, req: ChatRequest) -> OllamaStreamDecoder:
        return OllamaStreamDecoder(self.deployment.provider, self.deployment.model)

    def embeddings_request(self, body: JSONObject) -> UpstreamRequest:
        value = body.get("input")
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise UnsupportedParameterError(
                f"Provider '{self.deployment.provider}' embeds text only: 'input' must be a string or an "
                "array of strings (token arrays are not supported).",
                param="input",
            )
        out: JSONObject = {
            "model": self.deployment.model,
            "input": value,
            # OpenAI rejects an input longer than the model's context; Ollama would cut it silently.
            "truncate": False,
        }
        if isinstance(body.get("dimensions"), int):
            out["dimensions"] = body["dimensions"]
        return UpstreamRequest("POST", f"{self._base}/api/embed", self._headers, orjson.dumps(out))

    def parse_embeddings_response(self, body: bytes, request_body: JSONObject) -> tuple[JSONObject, Usage | None]:
        provider = self.deployment.provider
        data = load_object(body, provider)
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise ProviderProtocolError(
                f"Provider '{provider}' returned an embeddings response without 'embeddings'.",
                provider=provider,
            )
        as_base64 = request_body.get("encoding_format") == "base64"
        items: list[JSONValue] = []
        for i, vector in enumerate(vectors):
            assert isinstance(vector, list)
            embedding: JSONValue = _base64_floats(vector, provider) if as_base64 else vector
            items.append({"object": "embedding", "index": i, "embedding": embedding})
        count = data.get("prompt_eval_count")
        usage = Usage(count if isinstance(count, int) else 0, 0, estimated=not isinstance(count, int))
        model = request_body.get("model")
        out: JSONObject = {
            "object": "list",
            "data": items,
            "model": model if isinstance(model, str) else self.deployment.model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        }
        return out, usage

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        # Ollama's error body is {"error": "..."}; "model ... not found" (404) becomes model_not_found.
        return classify_http_error(self.deployment.provider, status, headers, body)


def _base64_floats(vector: list[JSONValue], provider: str) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32s (the openai SDK's default request)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector):
        raise ProviderProtocolError(f"Provider '{provider}' returned a non-numeric embedding.", provider=provider)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
