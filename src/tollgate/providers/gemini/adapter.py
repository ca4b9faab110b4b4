"""The Gemini adapter: URLs, credentials, embeddings and error mapping; chat translation lives beside it."""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Mapping
from urllib.parse import quote

import orjson

from tollgate.errors import InvalidRequestError, ProviderAuthError, UnsupportedParameterError, UpstreamError
from tollgate.providers.base import (
    Deployment,
    UpstreamRequest,
    WireFormat,
    check_params,
    classify_http_error,
)
from tollgate.providers.gemini.request import UNSUPPORTED, build_body
from tollgate.providers.gemini.response import load_object, parse_response, protocol_error, usage_of
from tollgate.providers.gemini.stream import GeminiStreamDecoder
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage

_JSON = "application/json"
_API_VERSIONS = ("/v1beta", "/v1", "/v1alpha")
# Gemini answers a bad key with 400 INVALID_ARGUMENT; these ErrorInfo reasons mark a credential problem.
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"})
_RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")  # google.protobuf.Duration in JSON, e.g. "7s" or "1.5s"
_CONTEXT_LENGTH = re.compile(r"input token count.*exceeds the maximum", re.IGNORECASE)


class GeminiAdapter:
    """``POST {base_url}/v1beta/models/{model}:generateContent`` with the key in ``x-goog-api-key``.

    The key never goes in the URL (Gemini also accepts ``?key=``), so it cannot leak into access logs.
    ``base_url`` is the host root; one that already ends in an API version (``/v1beta``) is used as is.
    """

    wire_format: WireFormat = "gemini"

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        base = deployment.base_url.rstrip("/")
        if not base.endswith(_API_VERSIONS):
            base += "/v1beta"
        self._model = deployment.model.removeprefix("models/")
        root = f"{base}/models/{quote(self._model, safe='')}"
        self._generate_url = f"{root}:generateContent"
        self._stream_url = f"{root}:streamGenerateContent?alt=sse"
        self._embed_url = f"{root}:batchEmbedContents"
        headers = {"content-type": _JSON, "accept": _JSON}
        if deployment.api_key:
            headers["x-goog-api-key"] = deployment.api_key
        headers.update(deployment.headers)
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        body = check_params(req.body, UNSUPPORTED, self.deployment)
        out = orjson.dumps(build_body(body))
        if req.stream:
            return UpstreamRequest("POST", self._stream_url, self._stream_headers, out)
        return UpstreamRequest("POST", self._generate_url, self._headers, out)

    def parse_chat_response(self, body: bytes, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        provider = self.deployment.provider
        return parse_response(load_object(body, provider), self._model, provider)

    def chat_stream_decoder(self, req: ChatRequest) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(self.deployment.provider, self._model)

    def embeddings_request(self, body: JSONObject) -> UpstreamRequest:
        texts = _embedding_inputs(body.get("input"))
        fmt = body.get("encoding_format")
        if fmt not in (None, "float", "base64"):
            raise InvalidRequestError("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
            raise InvalidRequestError("'dimensions' must be an integer.", param="dimensions")
        model = f"models/{self._model}"  # every request in a batch must name the model of the URL
        requests: list[JSONValue] = []
        for text in texts:
            item: JSONObject = {"model": model, "content": {"parts": [{"text": text}]}}
            if dimensions is not None:
                item["outputDimensionality"] = dimensions
            requests.append(item)
        return UpstreamRequest("POST", self._embed_url, self._headers, orjson.dumps({"requests": requests}))

    def parse_embeddings_response(self, body: bytes, request_body: JSONObject) -> tuple[JSONObject, Usage | None]:
        """``{"embeddings": [{"values": [...]}]}`` → the OpenAI list, base64-packed when the client asked
        (the openai SDK asks by default). batchEmbedContents reports no token counts, so usage is an
        estimate of four characters per token, marked ``estimated``."""
        provider = self.deployment.provider
        data = load_object(body, provider)
        texts = _embedding_inputs(request_body.get("input"))
        embeddings = data.get("embeddings")
        if not isinstance(embeddings, list) or len(embeddings) != len(texts):
            raise protocol_error(provider, "an embeddings response that does not match the inputs")
        packed = request_body.get("encoding_format") == "base64"
        items: list[JSONValue] = []
        for index, embedding in enumerate(embeddings):
            values = embedding.get("values") if isinstance(embedding, dict) else None
            if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
                raise protocol_error(provider, "an embedding without numeric 'values'")
            vector: JSONValue = _pack(values) if packed else values
            items.append({"object": "embedding", "index": index, "embedding": vector})
        usage = usage_of(data.get("usageMetadata"))
        if usage is None:
            usage = Usage(prompt_tokens=sum(math.ceil(len(t) / 4) for t in texts), estimated=True)
        tokens = usage.prompt_tokens
        out: JSONObject = {
            "object": "list",
            "data": items,
            "model": self._model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return out, usage

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        provider = self.deployment.provider
        error = _error_object(body)
        if status == 400 and _is_key_error(error):
            return ProviderAuthError(
                f"Provider '{provider}' rejected the gateway's credentials (HTTP 400, API key not valid); "
                "the gateway operator must check this provider's API key.",
                provider=provider,
                upstream_status=status,
            )
        if status == 429 and "retry-after" not in headers and "retry-after-ms" not in headers:
            delay = _retry_delay(error)
            if delay is not None:
                headers = {**headers, "retry-after": delay}
        err = classify_http_error(provider, status, headers, body)
        message = error.get("message")
        if status == 400 and isinstance(message, str) and _CONTEXT_LENGTH.search(message):
            err.code = "context_length_exceeded"
        return err


def _embedding_inputs(value: JSONValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise UnsupportedParameterError(
        "'input' must be a string or an array of strings for Gemini embeddings (token arrays are not supported).",
        param="input",
    )


def _pack(values: list[JSONValue]) -> str:
    """The OpenAI base64 encoding: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def _error_object(body: bytes) -> JSONObject:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, list) and data:  # some Google front ends wrap the error in an array
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: JSONObject) -> list[JSONObject]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _is_key_error(error: JSONObject) -> bool:
    if any(d.get("reason") in _AUTH_REASONS for d in _details(error)):
        return True
    message = error.get("message")
    return isinstance(message, str) and "api key not" in message.lower()


def _retry_delay(error: JSONObject) -> str | None:
    """Gemini puts the wait in a ``google.rpc.RetryInfo`` detail, not in a Retry-After header."""
    for detail in _details(error):
        delay = detail.get("retryDelay")
        if isinstance(delay, str):
            match = _RETRY_DELAY.match(delay)
            if match:
                return match.group(1)
    return None
