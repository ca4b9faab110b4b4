"""The Anthropic adapter against golden cases (request, response, stream) and its error mapping."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tollgate.errors import (
    InvalidRequestError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderProtocolError,
    ProviderRateLimitError,
    ProviderUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
)
from tollgate.providers.anthropic.adapter import AnthropicAdapter
from tollgate.providers.anthropic.stream import AnthropicStreamDecoder
from tollgate.providers.base import Deployment
from tollgate.providers.registry import build_adapter
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, chat_request_from_body

CASES = Path(__file__).parent / "cases"
API_KEY = "sk-ant-test-secret"


BASE = Deployment(
    provider="anthropic",
    provider_type="anthropic",
    model="claude-sonnet-4-5",
    base_url="https://api.anthropic.com",
    api_key=API_KEY,
)


def _deployment(**overrides: object) -> Deployment:
    return replace(BASE, **overrides)  # type: ignore[arg-type]


def _adapter(**overrides: object) -> AnthropicAdapter:
    return AnthropicAdapter(_deployment(**overrides))


def _cases(prefix: str) -> list[Path]:
    return sorted(CASES.glob(f"{prefix}_*.json"))


def _load(path: Path) -> JSONObject:
    data = orjson.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


def _request(body: JSONObject) -> ChatRequest:
    return chat_request_from_body(body)


def _without_created(items: list[JSONObject]) -> list[JSONObject]:
    out = []
    for item in items:
        assert isinstance(item.pop("created"), int)
        out.append(item)
    return out


# --- requests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _cases("request"), ids=lambda p: p.stem)
def test_request_golden(path: Path) -> None:
    case = _load(path)
    canonical = case["canonical"]
    assert isinstance(canonical, dict)
    before = copy.deepcopy(canonical)
    upstream = _adapter().chat_request(_request(canonical))
    assert upstream.method == "POST"
    assert upstream.url == "https://api.anthropic.com/v1/messages"
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == case["expected"]
    assert canonical == before  # the same request may go to another deployment next


def test_request_headers_carry_key_version_and_configured_extras() -> None:
    upstream = _adapter(headers={"anthropic-beta": "prompt-caching-2024-07-31"}).chat_request(
        _request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    )
    assert upstream.headers["x-api-key"] == API_KEY
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["content-type"] == "application/json"
    assert upstream.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "authorization" not in upstream.headers


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.anthropic.com",
        "https://api.anthropic.com/",
        "https://api.anthropic.com/v1",
        "https://api.anthropic.com/v1/",
    ],
)
def test_base_url_may_end_in_v1(base_url: str) -> None:
    upstream = _adapter(base_url=base_url).chat_request(
        _request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    )
    assert upstream.url == "https://api.anthropic.com/v1/messages"


def test_adapter_is_registered() -> None:
    assert isinstance(build_adapter(_deployment()), AnthropicAdapter)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("seed", 7),
        ("response_format", {"type": "json_object"}),
    ],
)
def test_unsupported_parameter_is_rejected_by_name_or_dropped(param: str, value: object) -> None:
    body: JSONObject = {"model": "m", "messages": [{"role": "user", "content": "x"}], param: value}  # type: ignore[dict-item]
    with pytest.raises(UnsupportedParameterError) as info:
        _adapter().chat_request(_request(body))
    assert info.value.param == param
    assert info.value.status == 400
    assert f"'{param}'" in info.value.message
    assert "anthropic" in info.value.message

    upstream = _adapter(drop_unsupported_params=True).chat_request(_request(body))
    assert upstream.body is not None
    sent = orjson.loads(upstream.body)
    assert param not in sent
    assert sent["messages"] == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
            },
            "messages[0].content[0]",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages[0].role"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://host/cat.png"}}]},
            "messages[0].content[0].image_url",
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "tool", "content": "result without an id"}, "messages[0].tool_call_id"),
    ],
)
def test_untranslatable_messages_are_a_400_naming_the_place(message: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter().chat_request(_request({"model": "m", "messages": [message]}))
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", False, {"type": "none"}),  # Anthropic's none takes no parallel flag
        ("required", True, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "now"}},
            False,
            {"type": "tool", "name": "now", "disable_parallel_tool_use": True},
        ),
        (None, None, None),
    ],
)
def test_tool_choice(choice: object, parallel: object, expected: object) -> None:
    body: JSONObject = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "now"}}],
    }
    if choice is not None:
        body["tool_choice"] = choice  # type: ignore[assignment]
    if parallel is not None:
        body["parallel_tool_calls"] = parallel  # type: ignore[assignment]
    upstream = _adapter().chat_request(_request(body))
    assert upstream.body is not None
    assert orjson.loads(upstream.body).get("tool_choice") == expected


def test_non_function_tools_are_rejected() -> None:
    body: JSONObject = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "custom", "custom": {"name": "grammar"}}],
    }
    with pytest.raises(InvalidRequestError) as info:
        _adapter().chat_request(_request(body))
    assert info.value.param == "tools[0]"


def test_passthrough_replaces_only_the_model() -> None:
    body: JSONObject = {
        "model": "claude-alias",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "a_future_field": [1, 2],
    }
    before = copy.deepcopy(body)
    upstream = _adapter(base_url="https://proxy.example/v1").passthrough_request("messages", body, orjson.dumps(body))
    assert upstream.url == "https://proxy.example/v1/messages"
    assert upstream.headers["x-api-key"] == API_KEY
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == {**before, "model": "claude-sonnet-4-5"}
    assert body == before
    count = _adapter().passthrough_request("messages/count_tokens", body, None)
    assert count.url == "https://api.anthropic.com/v1/messages/count_tokens"


def test_embeddings_are_a_400_naming_the_provider() -> None:
    with pytest.raises(InvalidRequestError) as info:
        _adapter(provider="claude-eu").embeddings_request({"model": "m", "input": "x"})
    assert "claude-eu" in info.value.message
    assert "embeddings" in info.value.message


# --- responses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _cases("response"), ids=lambda p: p.stem)
def test_response_golden(path: Path) -> None:
    case = _load(path)
    req = _request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    data, usage = _adapter().parse_chat_response(orjson.dumps(case["upstream"]), req)
    assert _without_created([data]) == [case["expected"]]
    expected = case["expected"]
    assert isinstance(expected, dict)
    assert (usage.to_openai() if usage else None) == expected.get("usage")


@pytest.mark.parametrize(
    "body",
    [
        b"<html>bad gateway</html>",
        b"[1, 2]",
        b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": []}',
        b'{"type": "message", "content": "not a list"}',
    ],
)
def test_response_that_is_not_a_message_is_a_protocol_error(body: bytes) -> None:
    req = _request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ProviderProtocolError) as info:
        _adapter().parse_chat_response(body, req)
    assert info.value.retryable
    assert info.value.status == 502


# --- streams ------------------------------------------------------------------------------------


def _stream_bytes(case: JSONObject) -> bytes:
    lines = case["upstream"]
    assert isinstance(lines, list)
    text = ("\r\n" if case.get("crlf") else "\n").join(str(line) for line in lines)
    return text.encode()


def _stream_decoder() -> AnthropicStreamDecoder:
    req = _request({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    return _adapter().chat_stream_decoder(req)


def _decode(pieces: list[bytes]) -> tuple[list[JSONObject], AnthropicStreamDecoder]:
    decoder = _stream_decoder()
    out: list[JSONObject] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.close())
    return out, decoder


def _splits(raw: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [raw]
    if how == "bytes":
        return [raw[i : i + 1] for i in range(len(raw))]
    rng = random.Random(len(raw))  # deterministic, but cuts inside events, lines and UTF-8 sequences
    cuts = sorted(rng.sample(range(1, len(raw)), 40))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
@pytest.mark.parametrize("path", _cases("stream"), ids=lambda p: p.stem)
def test_stream_golden(path: Path, how: str) -> None:
    case = _load(path)
    raw = _stream_bytes(case)
    pieces = _splits(raw, how)
    assert b"".join(pieces) == raw
    chunks, decoder = _decode(pieces)
    assert _without_created(chunks) == case["expected"]
    assert decoder.finish_reason == case["finish_reason"]
    usage = decoder.usage
    assert usage is not None
    assert {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
    } == case["usage"]


def _event(name: str, payload: JSONObject) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


START = _event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 1},
        },
    },
)
TEXT = _event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
) + _event(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial"}},
)


def test_cut_stream_raises_on_close_and_keeps_partial_usage() -> None:
    decoder = _stream_decoder()
    chunks = decoder.feed(START + TEXT)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "partial"},
    ]
    with pytest.raises(ProviderProtocolError) as info:
        decoder.close()
    assert "ended the stream before it finished" in info.value.message
    assert info.value.retryable
    usage = decoder.usage
    assert usage is not None
    assert usage.prompt_tokens == 11
    assert usage.completion_tokens == 1


def test_empty_stream_raises_on_close() -> None:
    with pytest.raises(ProviderProtocolError):
        _stream_decoder().close()


def test_overloaded_error_event_is_retryable_unavailable() -> None:
    decoder = _stream_decoder()
    error = _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    decoder.feed(START)
    for i in range(len(error) - 1):  # split anywhere: nothing surfaces until the event is complete
        assert decoder.feed(error[i : i + 1]) == []
    with pytest.raises(ProviderUnavailableError) as info:
        decoder.feed(error[-1:])
    assert info.value.retryable
    assert "Overloaded" in info.value.message


def test_other_error_event_is_an_upstream_error() -> None:
    decoder = _stream_decoder()
    error = _event("error", {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}})
    with pytest.raises(UpstreamError) as info:
        decoder.feed(START + error)
    assert type(info.value) is UpstreamError
    assert not info.value.retryable
    assert "api_error" in info.value.message


def test_stream_event_that_is_not_json_is_a_protocol_error() -> None:
    with pytest.raises(ProviderProtocolError):
        _stream_decoder().feed(b"event: message_start\ndata: {not json\n\n")


# --- errors -------------------------------------------------------------------------------------


def _anthropic_error(etype: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message}})


def test_529_overloaded_is_retryable_unavailable() -> None:
    err = _adapter().classify_error(529, {}, _anthropic_error("overloaded_error", "Overloaded"))
    assert isinstance(err, ProviderUnavailableError)
    assert err.retryable
    assert err.upstream_status == 529
    assert err.status == 502
    assert "overloaded" in err.message.lower()


def test_429_keeps_retry_after() -> None:
    err = _adapter().classify_error(
        429,
        {"retry-after": "7"},
        _anthropic_error("rate_limit_error", "Number of request tokens has exceeded"),
    )
    assert isinstance(err, ProviderRateLimitError)
    assert err.retry_after == 7.0
    assert err.headers["retry-after"] == "7"
    assert err.status == 429


def test_401_names_the_provider_not_the_key_or_its_message() -> None:
    body = _anthropic_error("authentication_error", f"invalid x-api-key {API_KEY}")
    err = _adapter().classify_error(401, {}, body)
    assert isinstance(err, ProviderAuthError)
    assert err.status == 502
    assert "anthropic" in err.message
    assert API_KEY not in err.message


def test_400_carries_anthropic_message_for_the_caller() -> None:
    err = _adapter().classify_error(400, {}, _anthropic_error("invalid_request_error", "max_tokens: too large"))
    assert isinstance(err, ProviderBadRequestError)
    assert err.status == 400
    assert "max_tokens: too large" in err.message


def test_500_is_retryable() -> None:
    err = _adapter().classify_error(500, {}, _anthropic_error("api_error", "Internal server error"))
    assert isinstance(err, ProviderUnavailableError)
    assert err.retryable


def test_404_model_is_model_not_found() -> None:
    err = _adapter().classify_error(404, {}, _anthropic_error("not_found_error", "model: claude-nope"))
    assert err.status == 404
    assert err.code == "model_not_found"
