"""OpenAI Chat Completions and embeddings: the canonical format, so translation is a model rename."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from tollgate.errors import ProviderProtocolError, UpstreamError
from tollgate.providers.base import (
    STREAM_EVENT,
    Deployment,
    UpstreamRequest,
    WireFormat,
    check_params,
    classify_http_error,
    load_json_object,
)
from tollgate.providers.openai.relay import OpenAIRelayDecoder
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage
from tollgate.wire.sse import SSEDecoder

_JSON = "application/json"
GATEWAY_METADATA_PREFIX = "tollgate_"


class OpenAIAdapter:
    """``POST {base_url}/chat/completions`` with ``Authorization: Bearer``."""

    wire_format: WireFormat = "openai"
    # OpenAI-compatible servers differ in what they accept; the plain OpenAI API accepts everything.
    unsupported: Mapping[str, str] = {}

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._base = deployment.base_url.rstrip("/")
        self._headers = self._build_headers(deployment)

    def _build_headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": _JSON, "accept": _JSON}
        if deployment.api_key:
            headers["authorization"] = f"Bearer {deployment.api_key}"
        headers.update(deployment.headers)
        return headers

    def _url(self, endpoint: str) -> str:
        return f"{self._base}/{endpoint}"

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        body = check_params(req.body, self.unsupported, self.deployment)
        body = {**body, "model": self.deployment.model}
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and any(k.startswith(GATEWAY_METADATA_PREFIX) for k in metadata):
            # Keys meant for the gateway (e.g. tollgate_cache_ttl) are not the provider's business.
            kept = {k: v for k, v in metadata.items() if not k.startswith(GATEWAY_METADATA_PREFIX)}
            if kept:
                body["metadata"] = kept
            else:
                del body["metadata"]
        if req.stream and not req.include_usage:
            # Ask for usage even when the client did not, so every stream is metered;
            # the front door drops the extra usage chunk for that client.
            opts = body.get("stream_options")
            body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        return UpstreamRequest("POST", self._url("chat/completions"), self._headers, orjson.dumps(body))

    def passthrough_request(self, path: str, body: JSONObject, raw: bytes | None) -> UpstreamRequest:
        """Forward a body for another OpenAI endpoint (legacy completions) with only the model replaced."""
        out = orjson.dumps({**body, "model": self.deployment.model})
        return UpstreamRequest("POST", self._url(path), self._headers, out)

    def parse_chat_response(self, body: bytes, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        data = load_json_object(body, self.deployment.provider)
        if not isinstance(data.get("choices"), list):
            raise ProviderProtocolError(
                f"Provider '{self.deployment.provider}' returned a response without 'choices'.",
                provider=self.deployment.provider,
            )
        return data, Usage.from_openai(data.get("usage"))

    def chat_stream_decoder(self, req: ChatRequest) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self.deployment.provider)

    def relay_stream_decoder(self, req: ChatRequest) -> OpenAIRelayDecoder:
        return OpenAIRelayDecoder(self.deployment.provider, hide_usage=not req.include_usage)

    def embeddings_request(self, body: JSONObject) -> UpstreamRequest:
        out = orjson.dumps({**body, "model": self.deployment.model})
        return UpstreamRequest("POST", self._url("embeddings"), self._headers, out)

    def parse_embeddings_response(self, body: bytes, request_body: JSONObject) -> tuple[JSONObject, Usage | None]:
        data = load_json_object(body, self.deployment.provider)
        return data, Usage.from_openai(data.get("usage"))

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        return classify_http_error(self.deployment.provider, status, headers, body)


class OpenAIStreamDecoder:
    """SSE ``data: {chunk}`` lines until ``data: [DONE]``; the usage chunk has empty ``choices``."""

    __slots__ = ("_done", "_sse", "finish_reason", "provider", "usage")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._sse = SSEDecoder()
        self._done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> list[JSONObject]:
        return self._decode(self._sse.feed(data))

    def close(self) -> list[JSONObject]:
        out = self._decode(self._sse.close())
        if not self._done and self.finish_reason is None:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' ended the stream before it finished.", provider=self.provider
            )
        return out

    def _decode(self, events: list) -> list[JSONObject]:  # type: ignore[type-arg]
        out: list[JSONObject] = []
        for ev in events:
            data = ev.data
            if data == "[DONE]":
                self._done = True
                continue
            if ev.event == "error":
                raise UpstreamError(
                    f"Provider '{self.provider}' sent an error mid-stream: {data[:300]}",
                    provider=self.provider,
                )
            chunk = load_json_object(data, self.provider, STREAM_EVENT)
            if "error" in chunk and "choices" not in chunk:
                raise UpstreamError(f"Provider '{self.provider}' sent an error mid-stream.", provider=self.provider)
            usage = Usage.from_openai(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
            choices = chunk.get("choices")
            if isinstance(choices, list):
                for choice in choices:
                    if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                        self.finish_reason = str(choice["finish_reason"])
            out.append(chunk)
        return out


class OpenAICompatibleAdapter(OpenAIAdapter):
    """Any server speaking the OpenAI API at its own ``base_url``; identical wire format."""
