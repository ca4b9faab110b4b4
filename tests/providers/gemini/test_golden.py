"""Golden cases: canonical request → Gemini URL and body; Gemini response and raw SSE → canonical output.

Each ``cases/*.json`` file is one case, named by kind: ``request_*`` (``request``, optional ``deployment``,
expected ``url`` and ``body``), ``response_*`` (``response`` → expected ``completion`` and ``usage``) and
``stream_*`` (raw ``sse`` text → expected ``chunks``, ``usage`` and ``finish_reason``). ``created`` is a
timestamp and is left out of the comparison.
"""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from tollgate.providers.base import Deployment
from tollgate.providers.gemini.adapter import GeminiAdapter
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage, chat_request_from_body

CASES = Path(__file__).parent / "cases"
KEY = "gemini-test-key"


def cases(kind: str) -> list[Path]:
    return sorted(CASES.glob(f"{kind}_*.json"))


def load(path: Path) -> JSONObject:
    data = orjson.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


def adapter(overrides: JSONValue = None) -> GeminiAdapter:
    fields = {"base_url": "https://generativelanguage.googleapis.com", "model": "gemini-2.5-flash"}
    if isinstance(overrides, dict):
        fields.update({k: str(v) for k, v in overrides.items()})
    return GeminiAdapter(Deployment(provider="gemini", provider_type="gemini", api_key=KEY, **fields))


def request_of(body: JSONValue) -> ChatRequest:
    assert isinstance(body, dict)
    return chat_request_from_body(body)


def usage_json(usage: Usage | None) -> JSONValue:
    if usage is None:
        return None
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "cached": usage.cached_tokens,
    }


def without_created(value: JSONObject) -> JSONObject:
    return {k: v for k, v in value.items() if k != "created"}


@pytest.mark.parametrize("path", cases("request"), ids=lambda p: p.stem)
def test_request_case(path: Path) -> None:
    case = load(path)
    req = request_of(case["request"])
    before = copy.deepcopy(req.body)
    upstream = adapter(case.get("deployment")).chat_request(req)
    assert upstream.method == "POST"
    assert upstream.url == case["url"]
    assert upstream.body is not None
    assert orjson.loads(upstream.body) == case["body"]
    assert upstream.headers["x-goog-api-key"] == KEY
    assert KEY not in upstream.url
    assert req.body == before  # the same request may go to another deployment next


@pytest.mark.parametrize("path", cases("response"), ids=lambda p: p.stem)
def test_response_case(path: Path) -> None:
    case = load(path)
    req = request_of({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    completion, usage = adapter().parse_chat_response(orjson.dumps(case["response"]), req)
    assert isinstance(completion["created"], int)
    assert without_created(completion) == case["completion"]
    assert usage_json(usage) == case["usage"]


def decode_stream(data: bytes, split: int | None) -> tuple[list[JSONObject], GeminiAdapter, Usage | None, str | None]:
    gem = adapter()
    decoder = gem.chat_stream_decoder(request_of({"model": "x", "messages": [{"role": "user", "content": "hi"}]}))
    chunks: list[JSONObject] = []
    step = split or len(data)
    for start in range(0, len(data), step):
        chunks.extend(decoder.feed(data[start : start + step]))
    chunks.extend(decoder.close())
    return chunks, gem, decoder.usage, decoder.finish_reason


@pytest.mark.parametrize("split", [None, 1, 7], ids=["whole", "byte-by-byte", "7-byte-reads"])
@pytest.mark.parametrize("path", cases("stream"), ids=lambda p: p.stem)
def test_stream_case(path: Path, split: int | None) -> None:
    case = load(path)
    raw = case["sse"]
    assert isinstance(raw, str)
    chunks, _, usage, finish = decode_stream(raw.encode(), split)
    assert [without_created(c) for c in chunks] == case["chunks"]
    assert len({c["created"] for c in chunks}) == 1
    assert usage_json(usage) == case["usage"]
    assert finish == case["finish_reason"]


def regenerate() -> None:  # pragma: no cover - a maintainer's tool: python -m tests.providers.gemini.test_golden
    """Fill in the expected outputs of response and stream cases from the current code, for review."""
    req = request_of({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    for path in cases("response"):
        case = load(path)
        completion, usage = adapter().parse_chat_response(orjson.dumps(case["response"]), req)
        case.update(completion=without_created(completion), usage=usage_json(usage))
        path.write_bytes(orjson.dumps(case, option=orjson.OPT_INDENT_2) + b"\n")
    for path in cases("stream"):
        case = load(path)
        raw = case["sse"]
        assert isinstance(raw, str)
        chunks, _, usage, finish = decode_stream(raw.encode(), None)
        case.update(chunks=[without_created(c) for c in chunks], usage=usage_json(usage), finish_reason=finish)
        path.write_bytes(orjson.dumps(case, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    regenerate()
