"""The Ollama adapter: golden request/response/stream cases, then the edge cases around them."""

from __future__ import annotations

import base64
import copy
import re
import struct
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tollgate.errors import (
    InvalidRequestError,
    ProviderBadRequestError,
    ProviderProtocolError,
    ProviderUnavailableError,
    UnsupportedParameterError,
    UpstreamError,
)
from tollgate.providers.base import Deployment
from tollgate.providers.ollama.adapter import OllamaAdapter
from tollgate.providers.registry import build_adapter
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import chat_request_from_body

CASES = Path(__file__).parent / "cases"
DEPLOYMENT = Deployment(provider="ollama", provider_type="ollama", model="llama3.2", base_url="http://127.0.0.1:11434")
_CALL_ID = re.compile(r"^call_(\d+)_[0-9a-f]{12}$")


def _cases(prefix: str) -> list[Path]:
    return sorted(CASES.glob(f"{prefix}_*.json"))


def _load(path: Path) -> JSONObject:
    data = orjson.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


def _adapter(**changes: object) -> OllamaAdapter:
    return OllamaAdapter(replace(DEPLOYMENT, **changes))


def _normalized(value: JSONValue) -> JSONValue:
    """Drop what varies per run (id, created) and turn derived call ids into ``call_<n>_HASH``."""
    if isinstance(value, dict):
        out: JSONObject = {}
        for key, item in value.items():
            if key in ("created",) or (key == "id" and isinstance(item, str) and item.startswith("chatcmpl-")):
                continue
            if key == "id" and isinstance(item, str) and (m := _CALL_ID.match(item)):
                out[key] = f"call_{m.group(1)}_HASH"
                continue
            out[key] = _normalized(item)
        return out
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _stream_bytes(case: JSONObject) -> bytes:
    lines = case["lines"]
    assert isinstance(lines, list)
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


@pytest.mark.parametrize("path", _cases("request"), ids=lambda p: p.stem)
def test_request_golden(path: Path) -> None:
    case = _load(path)
    body = case["request"]
    assert isinstance(body, dict)
    before = copy.deepcopy(body)
    req = chat_request_from_body(body)
    upstream = _adapter(model=str(body["model"]).split("/", 1)[1]).chat_request(req)
    expected = case["upstream"]
    assert isinstance(expected, dict)
    assert upstream.method == expected["method"]
    assert upstream.url == expected["url"]
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == expected["body"]
    assert body == before, "the adapter must not mutate the caller's request"


@pytest.mark.parametrize("path", _cases("response"), ids=lambda p: p.stem)
def test_response_golden(path: Path) -> None:
    case = _load(path)
    req = chat_request_from_body({"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}]})
    data, usage = _adapter().parse_chat_response(orjson.dumps(case["upstream"]), req)
    assert _normalized(data) == case["expected"]
    assert str(data["id"]).startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert usage is not None
    assert [usage.prompt_tokens, usage.completion_tokens] == case["usage"]


@pytest.mark.parametrize("path", _cases("stream"), ids=lambda p: p.stem)
@pytest.mark.parametrize("split", ["whole", "bytewise", "no_final_newline"])
def test_stream_golden(path: Path, split: str) -> None:
    case = _load(path)
    raw = _stream_bytes(case)
    req = chat_request_from_body(
        {"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    decoder = _adapter().chat_stream_decoder(req)
    chunks: list[JSONObject] = []
    if split == "whole":
        chunks += decoder.feed(raw)
    elif split == "bytewise":
        for i in range(len(raw)):
            chunks += decoder.feed(raw[i : i + 1])
    else:
        chunks += decoder.feed(raw.rstrip(b"\n"))
    chunks += decoder.close()
    assert _normalized(chunks) == case["expected"]
    assert len({c["id"] for c in chunks}) == 1, "every chunk of one stream shares its id"
    assert decoder.finish_reason == case["finish_reason"]
    assert decoder.usage is not None
    assert [decoder.usage.prompt_tokens, decoder.usage.completion_tokens] == case["usage"]


def _chat(body: JSONObject) -> JSONObject:
    full: JSONObject = {"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "hi"}], **body}
    upstream = _adapter().chat_request(chat_request_from_body(full))
    assert upstream.body is not None
    out = orjson.loads(upstream.body)
    assert isinstance(out, dict)
    return out


def test_no_auth_header_by_default_and_bearer_with_a_key() -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert "authorization" not in _adapter().chat_request(req).headers
    headers = _adapter(api_key="ollama-cloud-key", headers={"x-extra": "1"}).chat_request(req).headers
    assert headers["authorization"] == "Bearer ollama-cloud-key"
    assert headers["x-extra"] == "1"


@pytest.mark.parametrize("base", ["http://h:11434", "http://h:11434/", "http://h:11434/v1", "http://h:11434/api/"])
def test_base_url_is_the_server_root(base: str) -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert _adapter(base_url=base).chat_request(req).url == "http://h:11434/api/chat"


def test_registered_under_its_type() -> None:
    assert isinstance(build_adapter(DEPLOYMENT), OllamaAdapter)
    assert OllamaAdapter.wire_format == "ollama"


def test_http_image_is_a_400_naming_the_part() -> None:
    content: JSONValue = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    with pytest.raises(UnsupportedParameterError) as info:
        _chat({"messages": [{"role": "user", "content": content}]})
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[1].image_url"
    assert "https://example.com/cat.png" in info.value.message
    assert "base64" in info.value.message


def test_other_content_parts_are_rejected() -> None:
    audio: JSONValue = [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]
    with pytest.raises(UnsupportedParameterError) as info:
        _chat({"messages": [{"role": "user", "content": audio}]})
    assert info.value.param == "messages[0].content[0]"


@pytest.mark.parametrize(
    ("param", "value"),
    [("n", 2), ("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"50256": -100})],
)
def test_unsupported_parameters_are_400_or_dropped(param: str, value: JSONValue) -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        _chat({param: value})
    assert info.value.param == param
    assert "drop_unsupported_params" in info.value.message
    body: JSONObject = {"model": "m", "messages": [{"role": "user", "content": "x"}], param: value}
    upstream = _adapter(drop_unsupported_params=True).chat_request(chat_request_from_body(body))
    assert upstream.body is not None
    sent = orjson.loads(upstream.body)
    assert param not in sent
    assert "options" not in sent


def test_forced_tool_choice_is_400_and_narrowed_when_dropping() -> None:
    tools: JSONValue = [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
    ]
    with pytest.raises(UnsupportedParameterError) as info:
        _chat({"tools": tools, "tool_choice": "required"})
    assert info.value.param == "tool_choice"
    body: JSONObject = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "b"}},
    }
    upstream = _adapter(drop_unsupported_params=True).chat_request(chat_request_from_body(body))
    assert upstream.body is not None
    assert [t["function"]["name"] for t in orjson.loads(upstream.body)["tools"]] == ["b"]


def test_non_function_tools_are_rejected() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        _chat({"tools": [{"type": "custom", "custom": {"name": "x"}}]})
    assert info.value.param == "tools[0]"


def test_tool_call_arguments_must_be_a_json_object() -> None:
    messages: JSONValue = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}],
        },
    ]
    with pytest.raises(InvalidRequestError) as info:
        _chat({"messages": messages})
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_ollama_native_knobs_pass_through_under_the_openai_ones() -> None:
    out = _chat({"options": {"num_ctx": 8192, "temperature": 1.0}, "temperature": 0.1, "keep_alive": "10m"})
    assert out["options"] == {"num_ctx": 8192, "temperature": 0.1}
    assert out["keep_alive"] == "10m"
    assert _chat({"reasoning_effort": "high"})["think"] is True


def test_identical_answers_get_identical_tool_call_ids_and_calls_differ() -> None:
    upstream: JSONObject = {
        "model": "llama3.2",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "f", "arguments": {"a": 1}}},
                {"function": {"name": "f", "arguments": {"a": 1}}},
            ],
        },
        "done": True,
        "done_reason": "stop",
    }
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    first, _ = _adapter().parse_chat_response(orjson.dumps(upstream), req)
    again, _ = _adapter().parse_chat_response(orjson.dumps(upstream), req)
    ids = [c["id"] for c in first["choices"][0]["message"]["tool_calls"]]
    assert ids == [c["id"] for c in again["choices"][0]["message"]["tool_calls"]]
    assert len(set(ids)) == 2


def test_thinking_becomes_reasoning_content() -> None:
    upstream = {
        "model": "qwen3",
        "message": {"role": "assistant", "content": "4", "thinking": "2+2"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": 2,
    }
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    data, _ = _adapter().parse_chat_response(orjson.dumps(upstream), req)
    assert data["choices"][0]["message"]["reasoning_content"] == "2+2"


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b'{"model": "llama3.2", "done": true}'])
def test_malformed_response_is_a_protocol_error(body: bytes) -> None:
    req = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ProviderProtocolError):
        _adapter().parse_chat_response(body, req)


def test_error_object_mid_stream_raises() -> None:
    decoder = _adapter().chat_stream_decoder(
        chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    )
    decoder.feed(b'{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}\n')
    with pytest.raises(UpstreamError) as info:
        decoder.feed(b'{"error":"an error was encountered while running the model"}\n')
    assert "an error was encountered" in info.value.message


def test_cut_stream_raises_on_close_with_partial_text_delivered() -> None:
    decoder = _adapter().chat_stream_decoder(
        chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    )
    chunks = decoder.feed(b'{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}\n{"mod')
    assert [c["choices"][0].get("delta") for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
    ]
    with pytest.raises(ProviderProtocolError):
        decoder.close()


def test_stream_line_that_is_not_json_raises() -> None:
    decoder = _adapter().chat_stream_decoder(
        chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    )
    with pytest.raises(ProviderProtocolError):
        decoder.feed(b"data: {}\n")


def test_embeddings_request_and_response() -> None:
    body: JSONObject = {"model": "ollama/nomic-embed-text", "input": ["a", "b"], "dimensions": 2}
    adapter = _adapter(model="nomic-embed-text")
    upstream = adapter.embeddings_request(body)
    assert upstream.url == "http://127.0.0.1:11434/api/embed"
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == {
        "model": "nomic-embed-text",
        "input": ["a", "b"],
        "dimensions": 2,
        "truncate": False,
    }
    answer = {"model": "nomic-embed-text", "embeddings": [[0.5, -0.25], [1.0, 0.0]], "prompt_eval_count": 4}
    data, usage = adapter.parse_embeddings_response(orjson.dumps(answer), body)
    assert data == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "ollama/nomic-embed-text",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    assert usage is not None
    assert usage.prompt_tokens == 4


def test_embeddings_base64_encoding_is_little_endian_float32() -> None:
    body: JSONObject = {"model": "e", "input": "a", "encoding_format": "base64"}
    answer = {"embeddings": [[0.5, -0.25]], "prompt_eval_count": 1}
    data, _ = _adapter().parse_embeddings_response(orjson.dumps(answer), body)
    encoded = data["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -0.25)


def test_token_array_embedding_input_is_rejected() -> None:
    with pytest.raises(UnsupportedParameterError) as info:
        _adapter().embeddings_request({"model": "e", "input": [[1, 2, 3]]})
    assert info.value.param == "input"


def test_classify_error() -> None:
    adapter = _adapter()
    not_found = adapter.classify_error(404, {}, b'{"error":"model \\"llama9\\" not found, try pulling it first"}')
    assert isinstance(not_found, ProviderBadRequestError)
    assert (not_found.status, not_found.code) == (404, "model_not_found")
    assert "llama9" in not_found.message
    crashed = adapter.classify_error(500, {}, b'{"error":"llama runner process has terminated"}')
    assert isinstance(crashed, ProviderUnavailableError)
    assert crashed.retryable
    bad = adapter.classify_error(400, {}, b'{"error":"llama3.2 does not support tools"}')
    assert bad.status == 400
    assert "does not support tools" in bad.message
