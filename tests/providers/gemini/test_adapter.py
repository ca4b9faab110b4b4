"""The Gemini adapter's contract beyond the golden cases: validation, credentials, embeddings, stream ends."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from tollgate.errors import InvalidRequestError, ProviderProtocolError, UnsupportedParameterError
from tollgate.providers.base import Deployment
from tollgate.providers.gemini.adapter import GeminiAdapter
from tollgate.providers.registry import build_adapter
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, chat_request_from_body

KEY = "gemini-test-key"


def gemini(**overrides: object) -> GeminiAdapter:
    fields: dict[str, object] = {
        "provider": "gemini",
        "provider_type": "gemini",
        "model": "gemini-2.5-flash",
        "base_url": "https://generativelanguage.googleapis.com/",
        "api_key": KEY,
    }
    fields.update(overrides)
    return GeminiAdapter(Deployment(**fields))  # type: ignore[arg-type]


def chat(**extra: JSONValue) -> ChatRequest:
    body: JSONObject = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return chat_request_from_body(body)


def sent(req: ChatRequest, adapter: GeminiAdapter | None = None) -> JSONObject:
    upstream = (adapter or gemini()).chat_request(req)
    assert upstream.body is not None
    data = orjson.loads(upstream.body)
    assert isinstance(data, dict)
    return data


def test_registry_builds_the_gemini_adapter() -> None:
    adapter = build_adapter(gemini().deployment)
    assert isinstance(adapter, GeminiAdapter)
    assert adapter.wire_format == "gemini"


def test_key_header_and_configured_headers() -> None:
    adapter = gemini(headers={"x-goog-user-project": "proj-1", "accept": "application/json; charset=utf-8"})
    upstream = adapter.chat_request(chat())
    assert upstream.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    assert upstream.headers["x-goog-api-key"] == KEY
    assert upstream.headers["x-goog-user-project"] == "proj-1"
    assert upstream.headers["accept"] == "application/json; charset=utf-8"
    assert "authorization" not in upstream.headers
    assert KEY not in upstream.url


@pytest.mark.parametrize("param", ["logprobs", "top_logprobs", "logit_bias"])
def test_unsupported_parameters_are_rejected_by_name(param: str) -> None:
    value: JSONValue = {"50256": -100} if param == "logit_bias" else (True if param == "logprobs" else 3)
    with pytest.raises(UnsupportedParameterError) as info:
        gemini().chat_request(chat(**{param: value}))
    assert info.value.param == param
    assert param in info.value.message
    assert info.value.status == 400


def test_unsupported_parameters_are_dropped_when_configured() -> None:
    body = sent(chat(logprobs=True, top_logprobs=2, temperature=1.0), gemini(drop_unsupported_params=True))
    assert body["generationConfig"] == {"temperature": 1.0}


def test_null_unsupported_parameters_count_as_absent() -> None:
    assert "generationConfig" not in sent(chat(logprobs=None))


def test_a_tool_result_without_a_matching_call_is_a_400() -> None:
    req = chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "1"}])
    with pytest.raises(InvalidRequestError) as info:
        gemini().chat_request(req)
    assert info.value.param == "messages[1].tool_call_id"


def test_legacy_function_messages_carry_their_name() -> None:
    req = chat(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": '{"a": 1}'}},
            {"role": "function", "name": "f", "content": "done"},
        ]
    )
    assert sent(req)["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"content": "done"}}}]},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "42"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    req = chat(
        messages=[
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
    )
    with pytest.raises(InvalidRequestError) as info:
        gemini().chat_request(req)
    assert info.value.param == "messages[1].tool_calls[0].arguments"


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}, "messages[0].content[0].type"),
        ({"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}, "messages[0].content[0]"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}, "messages[0].content[0]"),
        ({"type": "file", "file": {"file_id": "file-123"}}, "messages[0].content[0].file"),
    ],
    ids=["unknown-type", "ftp-url", "data-url-not-base64", "uploaded-file-id"],
)
def test_content_parts_gemini_cannot_take_are_a_400(part: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        gemini().chat_request(chat(messages=[{"role": "user", "content": [part]}]))
    assert info.value.param == param


def test_non_function_tools_are_a_400() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        gemini().chat_request(chat(tools=[{"type": "custom", "custom": {"name": "grammar"}}]))
    assert info.value.param == "tools[0]"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tool_choice",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
def test_invalid_values_are_a_400(extra: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        gemini().chat_request(chat(**extra))
    assert info.value.param == param


def test_a_tool_choice_without_tools_is_not_sent() -> None:
    assert "toolConfig" not in sent(chat(tool_choice="required"))


# -- embeddings ----------------------------------------------------------------------------------------


def test_embeddings_request_shape() -> None:
    upstream = gemini(model="models/text-embedding-004").embeddings_request(
        {"model": "text-embedding-004", "input": "hello", "dimensions": 256, "user": "u1"}
    )
    assert upstream.url.endswith("/v1beta/models/text-embedding-004:batchEmbedContents")
    assert upstream.headers["x-goog-api-key"] == KEY
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "hello"}]},
                "outputDimensionality": 256,
            }
        ]
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2]]}, "input"),
        ({"input": []}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": "256"}, "dimensions"),
    ],
    ids=["tokens", "token-lists", "empty", "bad-format", "bad-dimensions"],
)
def test_embeddings_inputs_gemini_cannot_take_are_a_400(body: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        gemini().embeddings_request({"model": "m", **body})
    assert info.value.param == param


def test_embeddings_response_as_floats_with_estimated_usage() -> None:
    request: JSONObject = {"model": "gemini-embedding-001", "input": ["abcd", "abcdefghi"]}
    response = orjson.dumps({"embeddings": [{"values": [0.1, -0.2]}, {"values": [0.3, 0.4]}]})
    data, usage = gemini(model="gemini-embedding-001").parse_embeddings_response(response, request)
    assert data == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "gemini-embedding-001",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    assert usage is not None
    assert usage.prompt_tokens == 4
    assert usage.estimated


def test_embeddings_response_packed_as_base64_float32() -> None:
    request: JSONObject = {"model": "m", "input": "x", "encoding_format": "base64"}
    data, _ = gemini().parse_embeddings_response(orjson.dumps({"embeddings": [{"values": [0.5, -1.0, 3]}]}), request)
    items = data["data"]
    assert isinstance(items, list)
    assert isinstance(items[0], dict)
    packed = items[0]["embedding"]
    assert isinstance(packed, str)
    assert struct.unpack("<3f", base64.b64decode(packed)) == (0.5, -1.0, 3.0)


@pytest.mark.parametrize(
    "payload",
    [b'{"embeddings": [{"values": [0.1]}]}', b'{"embeddings": [{"values": "x"}, {"values": [1]}]}', b"{}"],
    ids=["too-few", "values-not-numbers", "no-embeddings"],
)
def test_embeddings_response_that_does_not_fit_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProviderProtocolError):
        gemini().parse_embeddings_response(payload, {"model": "m", "input": ["a", "b"]})


# -- stream ends ---------------------------------------------------------------------------------------


def sse(event: JSONObject) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def only_choices(chunks: list[JSONObject]) -> list[JSONObject]:
    """The single choice of each chunk."""
    out: list[JSONObject] = []
    for c in chunks:
        choices = c["choices"]
        assert isinstance(choices, list)
        assert len(choices) == 1
        assert isinstance(choices[0], dict)
        out.append(choices[0])
    return out


TEXT_EVENT = b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"index":0}]}\r\n\r\n'


def test_a_stream_cut_before_the_finish_reason_raises_on_close() -> None:
    decoder = gemini().chat_stream_decoder(chat(stream=True))
    assert decoder.feed(TEXT_EVENT)[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "logprobs": None, "finish_reason": None}
    ]
    with pytest.raises(ProviderProtocolError) as info:
        decoder.close()
    assert "ended the stream before it finished" in info.value.message
    assert decoder.finish_reason is None


def test_an_empty_stream_raises_on_close() -> None:
    decoder = gemini().chat_stream_decoder(chat(stream=True))
    assert decoder.feed(b"") == []
    with pytest.raises(ProviderProtocolError):
        decoder.close()


def test_a_last_event_without_a_trailing_blank_line_still_counts() -> None:
    decoder = gemini().chat_stream_decoder(chat(stream=True))
    event = b'data: {"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP","index":0}]}'
    assert decoder.feed(event) == []
    tail = decoder.close()
    assert [c["choices"] for c in tail][-1] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]


def test_several_candidates_stream_as_separate_choices() -> None:
    decoder = gemini().chat_stream_decoder(chat(stream=True, n=2))
    event = {
        "candidates": [
            {"content": {"parts": [{"text": "A"}]}, "index": 0},
            {"content": {"parts": [{"text": "B"}]}, "finishReason": "STOP", "index": 1},
        ]
    }
    deltas = [(c["index"], c["delta"], c["finish_reason"]) for c in only_choices(decoder.feed(sse(event)))]
    assert deltas == [
        (0, {"role": "assistant", "content": "A"}, None),
        (1, {"role": "assistant", "content": "B"}, None),
        (1, {}, "stop"),
    ]
    later = {"candidates": [{"content": {"parts": [{"text": "C"}]}, "finishReason": "MAX_TOKENS", "index": 0}]}
    assert [c["delta"] for c in only_choices(decoder.feed(sse(later)))] == [{"content": "C"}, {}]
    assert decoder.finish_reason == "length"
