"""Anthropic Messages ⇄ canonical translation done by the front door."""

from __future__ import annotations

import orjson
import pytest

from tollgate.api.anthropic_codec import AnthropicStreamEncoder, decode_request, encode_response
from tollgate.errors import InvalidRequestError, ProviderTimeoutError
from tollgate.wire.openai import Usage
from tollgate.wire.sse import SSEDecoder


def test_decode_full_request() -> None:
    req = decode_request(
        {
            "model": "m",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "sys"}],
            "temperature": 0.3,
            "stop_sequences": ["X"],
            "metadata": {"user_id": "u"},
            "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "calling"},
                        {"type": "tool_use", "id": "tu1", "name": "t", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "tu1",
                            "content": [{"type": "text", "text": "ok"}],
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
            "stream": True,
        }
    )
    body = req.body
    assert req.stream and req.include_usage
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [{"id": "tu1", "type": "function", "function": {"name": "t", "arguments": '{"a":1}'}}],
        },
        {"role": "tool", "tool_call_id": "tu1", "content": "ok"},
        {"role": "user", "content": "thanks"},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}, "description": "d"}}
    ]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["stop"] == ["X"] and body["user"] == "u" and body["max_tokens"] == 10


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "document"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_decode_rejects_bad_requests(patch: dict, fragment: str) -> None:  # type: ignore[type-arg]
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(InvalidRequestError, match=fragment):
        decode_request({k: v for k, v in body.items() if v is not None})


def test_encode_response_with_tool_use() -> None:
    data = {
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "sure",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 2}'}}
                    ],
                },
            }
        ],
    }
    msg = encode_response(data, Usage(10, 3, cached_tokens=4), "alias")
    assert msg["content"] == [
        {"type": "text", "text": "sure"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 2}},
    ]
    assert msg["stop_reason"] == "tool_use" and msg["model"] == "gpt-x"
    assert msg["usage"] == {"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 4}


def _events(data: bytes) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    return [(e.event, orjson.loads(e.data)) for e in SSEDecoder().feed(data)]


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:  # type: ignore[type-arg]
    out: dict = {
        "id": "c",
        "model": "up",
        "choices": []
        if delta is None
        else [  # type: ignore[type-arg]
            {"index": 0, "delta": delta, "finish_reason": finish}
        ],
    }
    if usage:
        out["usage"] = usage
    return out


def test_stream_encoder_text_then_tool_use_sequence() -> None:
    enc = AnthropicStreamEncoder("alias")
    out = enc.encode([_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hi"})])
    out += enc.encode(
        [
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _chunk({}, "tool_calls"),
            _chunk(None, usage={"prompt_tokens": 7, "completion_tokens": 2}),
        ]
    )
    out += enc.end()
    events = _events(out)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[4][1]["index"] == 1
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert events[5][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":'}
    assert events[8][1]["delta"]["stop_reason"] == "tool_use"
    assert events[8][1]["usage"] == {"input_tokens": 7, "output_tokens": 2}


def test_stream_encoder_error_event() -> None:
    data = AnthropicStreamEncoder("m").error(ProviderTimeoutError("slow", provider="p"))
    [(name, payload)] = _events(data)
    assert name == "error" and payload["error"]["type"] == "timeout_error"
