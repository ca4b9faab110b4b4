"""The official anthropic SDK against the gateway's /v1/messages, translated to an OpenAI backend."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-upstream-secret", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway("", env) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> anthropic.Anthropic:
    # The SDK sends the key as x-api-key, which the gateway accepts like a bearer token.
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def test_message_translated_to_openai_and_back(client: anthropic.Anthropic, fake_openai: FakeServer) -> None:
    message = client.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
        stop_sequences=["END"],
        metadata={"user_id": "u-42"},
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the fake OpenAI."
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    upstream = json.loads(fake_openai.last.body)
    assert upstream["messages"][0] == {"role": "system", "content": "Be brief."}
    assert upstream["max_tokens"] == 50 and upstream["stop"] == ["END"] and upstream["user"] == "u-42"


def test_stream_has_the_real_event_sequence(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="openai/gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].text == "Hello from the fake OpenAI."
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0


def test_tool_use_round_trip(client: anthropic.Anthropic, fake_openai: FakeServer) -> None:
    first = client.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Paris"}
    second = client.messages.create(
        model="openai/gpt-4o-mini",
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}],
            },
        ],
    )
    assert second.content[0].text == "Hello from the fake OpenAI."
    upstream = json.loads(fake_openai.last.body)
    assert upstream["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert upstream["messages"][2] == {"role": "tool", "tool_call_id": tool_use.id, "content": "sunny"}


def test_streamed_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="openai/gpt-4o-mini",
        max_tokens=50,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        final = stream.get_final_message()
    block = next(b for b in final.content if b.type == "tool_use")
    assert block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_errors_use_anthropic_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="nope-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="openai/scenario-429_retry_after", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model="openai/gpt-4o-mini",
            max_tokens=0,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "x"}],
        )
    assert "max_tokens" in str(bad.value)


def test_wrong_key_is_authentication_error(gw: RunningGateway) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key="tg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="openai/gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_cut_stream_raises_in_the_sdk(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="openai/scenario-cut_stream", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        for _ in stream:
            pass


@pytest.mark.asyncio
async def test_async_client(gw: RunningGateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    async with client.messages.stream(
        model="openai/gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text == "Hello from the fake OpenAI."
    await client.close()
