"""The output filter on tool-call arguments through the real gateway, with the official SDKs as clients.

The fake providers answer a request with tools by calling the first tool with ``{"city": "Paris"}``, streamed
as ``{"city``, ``": "Par``, ``is"}``: "Paris" is split across argument deltas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes import anthropic_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway

MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-haiku-4-5"
OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANTHROPIC_TOOLS: Any = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def _config(action: str) -> str:
    return (
        "guardrails:\n  output_filter:\n    enabled: true\n    placeholder: '[{category}]'\n"
        f"    categories:\n      places: {{words: [paris], action: {action}}}\n"
    )


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeServer]:
    with serve(anthropic_server.make_app()) as server:
        yield server


def _env(fake_openai: FakeServer, fake_anthropic: FakeServer) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-upstream",
        "OPENAI_BASE_URL": fake_openai.base_url + "/v1",
        "ANTHROPIC_API_KEY": "sk-ant-upstream",
        "ANTHROPIC_BASE_URL": fake_anthropic.base_url,
    }


@pytest.fixture(scope="module")
def masking(fake_openai: FakeServer, fake_anthropic: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config("mask"), _env(fake_openai, fake_anthropic)) as gw:
        yield gw


@pytest.fixture(scope="module")
def blocking(fake_openai: FakeServer, fake_anthropic: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config("block"), _env(fake_openai, fake_anthropic)) as gw:
        yield gw


def _openai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


def _claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def _messages() -> Any:
    return [{"role": "user", "content": f"weather? [{uuid.uuid4().hex}]"}]


@pytest.mark.parametrize("model", [MODEL, CLAUDE])
def test_openai_clients_get_masked_arguments_whole_and_streamed(masking: RunningGateway, model: str) -> None:
    client = _openai(masking)
    answer = client.chat.completions.create(model=model, messages=_messages(), tools=OPENAI_TOOLS)
    [call] = answer.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "[places]"}  # type: ignore[union-attr]
    with client.chat.completions.stream(model=model, messages=_messages(), tools=OPENAI_TOOLS) as stream:
        final = stream.get_final_completion()  # the SDK accumulates the argument deltas per call index
    [call] = final.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "[places]"}  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", [MODEL, CLAUDE])
def test_anthropic_clients_get_masked_tool_input_whole_and_streamed(masking: RunningGateway, model: str) -> None:
    claude = _claude(masking)
    message = claude.messages.create(model=model, max_tokens=50, messages=_messages(), tools=ANTHROPIC_TOOLS)
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "[places]"}]  # type: ignore[union-attr]
    with claude.messages.stream(model=model, max_tokens=50, messages=_messages(), tools=ANTHROPIC_TOOLS) as stream:
        final = stream.get_final_message()  # the SDK parses the input_json_delta pieces as JSON
    assert [b.input for b in final.content if b.type == "tool_use"] == [{"city": "[places]"}]
    assert final.stop_reason == "tool_use"
    if model == CLAUDE:  # the text before the call comes first, in its own block
        assert [b.type for b in final.content] == ["text", "tool_use"]


@pytest.mark.parametrize("model", [MODEL, CLAUDE])
def test_blocked_arguments_are_a_403_or_a_terminal_error_event(blocking: RunningGateway, model: str) -> None:
    client = _openai(blocking)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model=model, messages=_messages(), tools=OPENAI_TOOLS)
    assert info.value.code == "output_blocked" and "Paris" not in info.value.response.text
    streamed: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model=model, messages=_messages(), tools=OPENAI_TOOLS, stream=True):
            for choice in chunk.choices:
                streamed.extend(c.function.arguments or "" for c in choice.delta.tool_calls or [] if c.function)

    with pytest.raises(openai.APIError, match="places"):
        read()
    assert "Paris" not in "".join(streamed)
    claude = _claude(blocking)

    def read_claude() -> None:
        with claude.messages.stream(model=model, max_tokens=50, messages=_messages(), tools=ANTHROPIC_TOOLS) as s:
            for _ in s:
                pass

    with pytest.raises(anthropic.APIError, match="places"):
        read_claude()
