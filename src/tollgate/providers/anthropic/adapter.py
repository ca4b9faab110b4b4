"""Anthropic Messages API (``POST /v1/messages``) as a provider, plus same-format pass-through."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from tollgate.errors import InvalidRequestError, ProviderUnavailableError, UpstreamError
from tollgate.providers.anthropic.request import UNSUPPORTED, build_body, effective_params
from tollgate.providers.anthropic.response import load_object, to_chat_completion
from tollgate.providers.anthropic.stream import AnthropicStreamDecoder
from tollgate.providers.base import (
    Deployment,
    UpstreamRequest,
    WireFormat,
    check_params,
    classify_http_error,
    upstream_error_message,
)
from tollgate.providers.env_defaults import ANTHROPIC_VERSION
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage

_JSON = "application/json"


class AnthropicAdapter:
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``."""

    wire_format: WireFormat = "anthropic"

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        base = deployment.base_url.rstrip("/")
        # The configured base is the host root, but a copied SDK-style URL ending in /v1 must work too.
        self._base = base[:-3] if base.endswith("/v1") else base
        headers = {"content-type": _JSON, "accept": _JSON, "anthropic-version": ANTHROPIC_VERSION}
        if deployment.api_key:
            headers["x-api-key"] = deployment.api_key
        headers.update(deployment.headers)
        self._headers = headers

    def _url(self, path: str) -> str:
        return f"{self._base}/v1/{path.lstrip('/')}"

    def chat_request(self, req: ChatRequest) -> UpstreamRequest:
        body = check_params(effective_params(req.body), UNSUPPORTED, self.deployment)
        out = build_body(body, self.deployment.model)
        return UpstreamRequest("POST", self._url("messages"), dict(self._headers), orjson.dumps(out))

    def passthrough_request(self, path: str, body: JSONObject, raw: bytes | None) -> UpstreamRequest:
        """The client already speaks Anthropic: only the model changes, fields we do not know survive."""
        out = orjson.dumps({**body, "model": self.deployment.model})
        return UpstreamRequest("POST", self._url(path), dict(self._headers), out)

    def parse_chat_response(self, body: bytes, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        provider = self.deployment.provider
        return to_chat_completion(load_object(body, provider), provider)

    def chat_stream_decoder(self, req: ChatRequest) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(self.deployment.provider, self.deployment.model)

    def embeddings_request(self, body: JSONObject) -> UpstreamRequest:
        raise self._no_embeddings()

    def parse_embeddings_response(self, body: bytes, request_body: JSONObject) -> tuple[JSONObject, Usage | None]:
        raise self._no_embeddings()

    def _no_embeddings(self) -> InvalidRequestError:
        return InvalidRequestError(
            f"Provider '{self.deployment.provider}' (Anthropic) has no embeddings API; "
            "route embeddings to a provider that offers them.",
            param="model",
        )

    def classify_error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        provider = self.deployment.provider
        if status == 529:
            # Anthropic's "overloaded": temporary, like a 503, so another deployment is worth trying.
            return ProviderUnavailableError(
                f"Provider '{provider}' is overloaded (HTTP 529): {upstream_error_message(body)}",
                provider=provider,
                upstream_status=status,
            )
        return classify_http_error(provider, status, headers, body)
