"""The OpenAI stream encoder hides the usage the gateway requested on its own behalf."""

from __future__ import annotations

from tollgate.api.openai import OpenAIStreamEncoder
from tollgate.errors import ProviderUnavailableError


def test_usage_hidden_unless_requested() -> None:
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}], "usage": None},
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    ]
    hidden = OpenAIStreamEncoder(False).encode(chunks)
    assert hidden == b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    shown = OpenAIStreamEncoder(True).encode(chunks)
    assert shown.count(b"data: ") == 2 and b'"usage":{"prompt_tokens":1' in shown
    assert "usage" in chunks[0]  # the canonical chunk is not mutated


def test_error_event_is_openai_shaped() -> None:
    data = OpenAIStreamEncoder(False).error(ProviderUnavailableError("down", provider="p"))
    assert data.startswith(b'data: {"error":{"message":"down","type":"upstream_error"')
    assert OpenAIStreamEncoder(False).end() == b"data: [DONE]\n\n"
