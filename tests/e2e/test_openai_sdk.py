"""The official openai SDK against a running gateway, over the OpenAI adapter (fake OpenAI) and the demo."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    config = """
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    base_url: ${FAKE_OPENAI}/v1
    timeouts: {read: 2}
models:
  fast:
    deployments:
      - {provider: openai, model: scenario-500}
      - {provider: openai, model: gpt-4o-mini}
"""
    env = {"OPENAI_API_KEY": "sk-upstream-secret", "FAKE_OPENAI": fake_openai.base_url}
    with run_gateway(config, env) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


def test_chat_completion_reaches_provider_with_gateway_credentials(
    client: openai.OpenAI, fake_openai: FakeServer
) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature=0.2, seed=7
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == "Hello from the fake OpenAI."
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert resp.headers["x-tollgate-provider"] == "openai"
    assert resp.headers["x-tollgate-model"] == "gpt-4o-mini"
    assert resp.headers["x-request-id"]
    upstream = fake_openai.last
    assert upstream.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert b'"seed":7' in upstream.body and b'"temperature":0.2' in upstream.body


def test_bare_catalog_name_resolves_to_configured_openai(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "Hello from the fake OpenAI."


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake OpenAI."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_streaming_without_usage_hides_the_usage_chunk(client: openai.OpenAI, fake_openai: FakeServer) -> None:
    chunks = list(
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    # The gateway still asked the provider for usage, so it can meter the stream.
    assert b'"include_usage":true' in fake_openai.last.body


def test_tool_calls_round_trip_and_stream(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "Paris"}'
    stream = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    args = ""
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args += tc.function.arguments or ""
    assert args == '{"city": "Paris"}'


def test_fallback_on_provider_500_is_invisible_to_client(gw: RunningGateway, client: openai.OpenAI) -> None:
    resp = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert resp.parse().choices[0].message.content == "Hello from the fake OpenAI."
    assert resp.headers["x-tollgate-attempts"] == "2"
    assert resp.headers["x-tollgate-fallback"] == "true"
    assert resp.headers["x-tollgate-model"] == "gpt-4o-mini"


def test_provider_429_maps_to_429_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="openai/scenario-429_retry_after", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"


def test_provider_401_is_a_502_naming_the_provider_not_the_key(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="openai/scenario-401", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert "openai" in info.value.message
    assert "sk-upstream" not in info.value.response.text and "sk-up***" not in info.value.response.text


def test_provider_timeout_is_504(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="openai/scenario-timeout_before_headers", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 504


def test_cut_stream_ends_with_a_clean_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="openai/scenario-cut_stream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "ended the stream" in str(info.value.message) or "broke the connection" in str(info.value.message)


def test_stalled_stream_is_cut_after_the_read_timeout(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="openai/scenario-stall_mid_stream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "timed out" in str(info.value.message)


def test_garbage_from_provider_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="openai/scenario-garbage", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="openai/text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2 and result.data[0].embedding == [0.1, 0.2, 0.3]


def test_legacy_completions_pass_through(client: openai.OpenAI) -> None:
    result = client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="hello")
    assert result.choices[0].text == " world"


def test_models_lists_aliases_and_provider_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"fast", "openai/gpt-4o-mini", "demo/tollgate-demo"} <= ids


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert "/v1/models" in info.value.message


def test_demo_provider_streams_and_calls_tools(client: openai.OpenAI) -> None:
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="demo/tollgate-demo", messages=[{"role": "user", "content": "ping"}], stream=True
        )
        if c.choices
    )
    assert "demo" in text and '"ping"' in text
    completion = client.chat.completions.create(
        model="demo/tollgate-demo", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL]
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"demo"}'


@pytest.mark.asyncio
async def test_async_client_streams(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    stream = await client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from the fake OpenAI."
    await client.close()


def test_gateway_metadata_keys_do_not_reach_the_provider(client: openai.OpenAI, fake_openai: FakeServer) -> None:
    client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        metadata={"tollgate_cache_ttl": "60", "project": "apollo"},
    )
    sent = json.loads(fake_openai.last.body)
    assert sent["metadata"] == {"project": "apollo"}
    client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], metadata={"tollgate_cache_ttl": "0"}
    )
    assert "metadata" not in json.loads(fake_openai.last.body)
