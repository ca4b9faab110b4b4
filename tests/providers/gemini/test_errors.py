"""Gemini's error bodies → the gateway's error tree (status, retryability, no credentials in messages)."""

from __future__ import annotations

import orjson
import pytest

from tollgate.errors import (
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    UpstreamError,
)
from tollgate.providers.base import Deployment
from tollgate.providers.gemini.adapter import GeminiAdapter
from tollgate.wire.openai import chat_request_from_body

KEY = "AIzaSy-secret-test-key"


def gemini() -> GeminiAdapter:
    return GeminiAdapter(
        Deployment(
            provider="google",
            provider_type="gemini",
            model="gemini-2.5-flash",
            base_url="https://generativelanguage.googleapis.com",
            api_key=KEY,
        )
    )


def body(code: int, status: str, message: str, details: list[object] | None = None) -> bytes:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return orjson.dumps({"error": error})


KEY_INVALID = body(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
    ],
)


def test_invalid_key_400_is_an_auth_error_naming_the_provider() -> None:
    err = gemini().classify_error(400, {}, KEY_INVALID)
    assert isinstance(err, ProviderAuthError)
    assert err.status == 502
    assert err.code == "provider_auth_error"
    assert not err.retryable
    assert "'google'" in err.message
    assert KEY not in err.message
    assert err.upstream_status == 400


def test_key_error_is_recognised_by_message_when_details_are_missing() -> None:
    err = gemini().classify_error(400, {}, body(400, "INVALID_ARGUMENT", "API Key not found. Please pass a valid key."))
    assert isinstance(err, ProviderAuthError)


def test_permission_denied_is_an_auth_error() -> None:
    err = gemini().classify_error(403, {}, body(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers"))
    assert isinstance(err, ProviderAuthError)


def test_resource_exhausted_takes_the_retry_delay_from_retry_info() -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "requests"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
    ]
    err = gemini().classify_error(429, {}, body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota", details))
    assert isinstance(err, ProviderRateLimitError)
    assert err.retryable
    assert err.status == 429
    assert err.retry_after == 12.5
    assert err.headers["retry-after"] == "12"


def test_a_retry_after_header_wins_over_the_body() -> None:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]
    err = gemini().classify_error(429, {"retry-after": "3"}, body(429, "RESOURCE_EXHAUSTED", "quota", details))
    assert err.retry_after == 3.0


def test_429_without_any_delay() -> None:
    err = gemini().classify_error(429, {}, body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"))
    assert isinstance(err, ProviderRateLimitError)
    assert err.retry_after is None


@pytest.mark.parametrize(
    ("status", "grpc", "kind"),
    [
        (503, "UNAVAILABLE", ProviderUnavailableError),
        (500, "INTERNAL", ProviderUnavailableError),
        (504, "DEADLINE_EXCEEDED", ProviderTimeoutError),
    ],
)
def test_server_side_failures_are_retryable(status: int, grpc: str, kind: type[UpstreamError]) -> None:
    err = gemini().classify_error(status, {}, body(status, grpc, "The model is overloaded."))
    assert isinstance(err, kind)
    assert err.retryable


def test_a_bad_request_keeps_gemini_s_message_for_the_caller() -> None:
    message = "* GenerateContentRequest.generation_config.temperature: must be <= 2"
    err = gemini().classify_error(400, {}, body(400, "INVALID_ARGUMENT", message))
    assert isinstance(err, ProviderBadRequestError)
    assert err.status == 400
    assert message in err.message
    assert not err.retryable


def test_context_too_long_is_marked() -> None:
    message = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    err = gemini().classify_error(400, {}, body(400, "INVALID_ARGUMENT", message))
    assert isinstance(err, ProviderBadRequestError)
    assert err.code == "context_length_exceeded"


def test_unknown_model_is_404_model_not_found() -> None:
    message = "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent."
    err = gemini().classify_error(404, {}, body(404, "NOT_FOUND", message))
    assert err.status == 404
    assert err.code == "model_not_found"


def test_an_error_body_that_is_not_json() -> None:
    err = gemini().classify_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(err, ProviderUnavailableError)
    assert "Bad Gateway" in err.message


def test_an_error_event_mid_stream_raises_the_classified_error() -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    decoder = gemini().chat_stream_decoder(req)
    first = b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}\r\n\r\n'
    assert len(decoder.feed(first)) == 1
    error = b"data: " + body(503, "UNAVAILABLE", "The model is overloaded.") + b"\r\n\r\n"
    with pytest.raises(ProviderUnavailableError) as info:
        decoder.feed(error)
    assert "mid-stream" in info.value.message
    assert "overloaded" in info.value.message


@pytest.mark.parametrize(
    "payload",
    [b"<html>oops</html>", b"[1, 2]", b'{"candidates": "nope"}', b'{"candidates": [1]}', b'{"text": "hi"}'],
    ids=["not-json", "array", "candidates-not-list", "candidate-not-object", "no-candidates"],
)
def test_a_malformed_response_is_a_protocol_error(payload: bytes) -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ProviderProtocolError) as info:
        gemini().parse_chat_response(payload, req)
    assert info.value.retryable
    assert "'google'" in info.value.message


@pytest.mark.parametrize("event", [b"data: not json\r\n\r\n", b"data: [1]\r\n\r\n"], ids=["not-json", "array"])
def test_a_malformed_stream_event_is_a_protocol_error(event: bytes) -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    with pytest.raises(ProviderProtocolError):
        gemini().chat_stream_decoder(req).feed(event)
