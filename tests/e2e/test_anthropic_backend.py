"""The official openai and anthropic SDKs against a running gateway backed by the fake Anthropic API."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import anthropic
import openai
import orjson
import pytest

from tests.fakes import anthropic_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tollgate.types import JSONObject

UPSTREAM_KEY = "sk-ant-upstream-secret"
ANSWER = anthropic_server.ANSWER
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeServer]:
    with serve(anthropic_server.make_app()) as server:
        yield server


@pytest.fixture(scope="module")
def gw(fake_anthropic: FakeServer) -> Iterator[RunningGateway]:
    # The provider itself comes from the environment (zero config); the file only adds a fallback alias.
    config = """
models:
  claude-resilient:
    deployments:
      - {provider: anthropic, model: claude-scenario-529}
      - {provider: anthropic, model: claude-haiku-4-5}
"""
    env = {"ANTHROPIC_API_KEY": UPSTREAM_KEY, "ANTHROPIC_BASE_URL": fake_anthropic.base_url}
    with run_gateway(config, env) as running:
        yield running


@pytest.fixture
def oai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


@pytest.fixture
def claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def _sent(fake: FakeServer) -> JSONObject:
    body = orjson.loads(fake.last.body)
    assert isinstance(body, dict)
    return body


# --- openai SDK → gateway → Anthropic (translated) ----------------------------------------------


def test_chat_is_translated_and_sent_with_the_gateway_credentials(
    oai: openai.OpenAI, fake_anthropic: FakeServer
) -> None:
    resp = oai.chat.completions.with_raw_response.create(
        model="anthropic/claude-haiku-4-5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.2,
        user="user-7",
        # Not an OpenAI parameter, so it must not reach Anthropic (which rejects unknown fields);
        # top_k is Anthropic's own and is forwarded.
        extra_body={"some_vendor_flag": True, "top_k": 3},
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert resp.headers["x-tollgate-provider"] == "anthropic"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == 5
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == anthropic_server.CACHE_READ
    upstream = fake_anthropic.last
    assert upstream.path == "/v1/messages"
    assert upstream.headers["x-api-key"] == UPSTREAM_KEY
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in upstream.headers
    assert _sent(fake_anthropic) == {
        "model": "claude-haiku-4-5",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_k": 3,
        "metadata": {"user_id": "user-7"},
    }


def test_streaming_with_usage(oai: openai.OpenAI, fake_anthropic: FakeServer) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="anthropic/claude-haiku-4-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=50,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    assert _sent(fake_anthropic)["stream"] is True
    assert _sent(fake_anthropic)["max_tokens"] == 50


def test_streaming_without_usage_hides_the_usage_chunk(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER


def test_tool_call_round_trip(oai: openai.OpenAI, fake_anthropic: FakeServer) -> None:
    question = {"role": "user", "content": "Weather in Paris?"}
    completion = oai.chat.completions.create(
        model="anthropic/claude-haiku-4-5", messages=[question], tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls
    assert calls is not None
    assert calls[0].id == anthropic_server.TOOL_ID
    assert calls[0].function.name == "get_weather"
    assert orjson.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert _sent(fake_anthropic)["tools"] == [ANTHROPIC_WEATHER_TOOL]
    assert _sent(fake_anthropic)["tool_choice"] == {"type": "auto"}

    # The answer goes back as a tool message; the fake checks the tool_result matches the tool_use id.
    follow_up = oai.chat.completions.create(
        model="anthropic/claude-haiku-4-5",
        messages=[
            question,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18C and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow_up.choices[0].message.content == ANSWER
    assert _sent(fake_anthropic)["messages"][-1] == {  # type: ignore[index]
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "18C and sunny"}],
    }


def test_tool_call_streamed(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="anthropic/claude-haiku-4-5",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    args, ids, names, finish = "", [], [], []
    for c in stream:
        if not c.choices:
            continue
        if c.choices[0].finish_reason:
            finish.append(c.choices[0].finish_reason)
        for tc in c.choices[0].delta.tool_calls or []:
            assert tc.index == 0
            args += tc.function.arguments or "" if tc.function else ""
            if tc.id:
                ids.append(tc.id)
            if tc.function and tc.function.name:
                names.append(tc.function.name)
    assert args == '{"city": "Paris"}'
    assert ids == [anthropic_server.TOOL_ID]
    assert names == ["get_weather"]
    assert finish == ["tool_calls"]


def test_unsupported_parameter_is_a_400_naming_it(oai: openai.OpenAI, fake_anthropic: FakeServer) -> None:
    before = len(fake_anthropic.requests)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "x"}], seed=7
        )
    assert info.value.param == "seed"
    assert "'seed'" in info.value.message
    assert len(fake_anthropic.requests) == before  # rejected before any upstream call


def test_provider_400_is_a_400_with_the_provider_message(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="claude-scenario-400", messages=[{"role": "user", "content": "x"}])
    assert "text content blocks must be non-empty" in info.value.message


def test_provider_429_maps_to_429_with_retry_after(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(
            model="claude-scenario-429_retry_after", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"


def test_provider_401_is_a_502_naming_the_provider_not_the_key(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="claude-scenario-401", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert "anthropic" in info.value.message
    assert UPSTREAM_KEY not in info.value.response.text
    assert "sk-ant" not in info.value.response.text


def test_overloaded_529_falls_back_to_the_next_deployment(oai: openai.OpenAI) -> None:
    resp = oai.chat.completions.with_raw_response.create(
        model="claude-resilient", messages=[{"role": "user", "content": "x"}]
    )
    assert resp.parse().choices[0].message.content == ANSWER
    assert resp.headers["x-tollgate-attempts"] == "2"
    assert resp.headers["x-tollgate-fallback"] == "true"
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="claude-scenario-529", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert "overloaded" in info.value.message


@pytest.mark.parametrize("scenario", ["cut_stream", "error_mid_stream"])
def test_broken_stream_ends_with_an_error_event(oai: openai.OpenAI, scenario: str) -> None:
    stream = oai.chat.completions.create(
        model=f"claude-scenario-{scenario}", messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as info:  # noqa: PT012 - the error arrives while iterating
        for c in stream:
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text == "Hello"  # what arrived before the break was delivered
    message = str(info.value.message)
    if scenario == "cut_stream":
        # The transport may notice the unfinished chunked body before the decoder notices the missing end.
        assert "ended the stream" in message or "broke the connection" in message
    else:
        assert "overloaded" in message


def test_garbage_from_provider_is_a_502(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="claude-scenario-garbage", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


def test_embeddings_are_a_clear_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model="anthropic/claude-haiku-4-5", input="x")
    assert "embeddings" in info.value.message


# --- anthropic SDK → gateway → Anthropic (pass-through) -----------------------------------------


def test_messages_create_passes_through(claude: anthropic.Anthropic, fake_anthropic: FakeServer) -> None:
    message = claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == ANSWER
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == anthropic_server.CACHE_READ
    assert fake_anthropic.last.headers["x-api-key"] == UPSTREAM_KEY


def test_fields_the_gateway_does_not_know_reach_the_provider_unchanged(
    claude: anthropic.Anthropic, fake_anthropic: FakeServer
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = claude.messages.create(
        model="anthropic/claude-haiku-4-5",
        max_tokens=2000,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        metadata={"user_id": "u-1"},
        extra_body={"top_k": 5, "thinking": thinking},
    )
    assert message.content[0].type == "text"
    sent = _sent(fake_anthropic)
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["top_k"] == 5
    assert sent["thinking"] == thinking
    assert sent["metadata"] == {"user_id": "u-1"}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    ]


def test_blocks_only_anthropic_knows_pass_through(claude: anthropic.Anthropic, fake_anthropic: FakeServer) -> None:
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a memo"}}
    message = claude.messages.create(
        model="anthropic/claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": [document, {"type": "text", "text": "summarise"}]}],
    )
    assert message.content[0].type == "text"
    assert _sent(fake_anthropic)["messages"][0]["content"][0] == document


def test_messages_stream_passes_through(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == ANSWER
    assert final.content[0].type == "text"
    assert final.content[0].text == ANSWER
    assert final.usage.output_tokens == 5
    assert final.usage.cache_read_input_tokens == anthropic_server.CACHE_READ
    assert final.stop_reason == "end_turn"


def test_tool_use_passes_through(claude: anthropic.Anthropic, fake_anthropic: FakeServer) -> None:
    question = {"role": "user", "content": "Weather in Paris?"}
    message = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=[question], tools=[ANTHROPIC_WEATHER_TOOL]
    )
    assert message.stop_reason == "tool_use"
    tool_use = message.content[1]
    assert tool_use.type == "tool_use"
    assert tool_use.name == "get_weather"
    assert tool_use.input == {"city": "Paris"}
    with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        tools=[ANTHROPIC_WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C"}],
            },
        ],
    ) as stream:
        assert stream.get_final_message().content[0].text == ANSWER  # type: ignore[union-attr]
    assert _sent(fake_anthropic)["tools"] == [ANTHROPIC_WEATHER_TOOL]


def test_streamed_tool_use_passes_through(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[ANTHROPIC_WEATHER_TOOL],
    ) as stream:
        final = stream.get_final_message()
    tool_use = final.content[1]
    assert tool_use.type == "tool_use"
    assert tool_use.input == {"city": "Paris"}


def test_provider_errors_reach_the_anthropic_client_in_its_format(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as rate:
        claude.messages.create(
            model="claude-scenario-429_retry_after",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )
    assert rate.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APIStatusError) as auth:
        claude.messages.create(model="claude-scenario-401", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert auth.value.status_code == 502
    assert UPSTREAM_KEY not in auth.value.response.text


def test_cut_pass_through_stream_is_an_error(claude: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIError) as info,
        claude.messages.stream(
            model="claude-scenario-cut_stream", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        stream.get_final_message()
    assert "ended the stream" in str(info.value) or "broke the connection" in str(info.value)


@pytest.mark.asyncio
async def test_async_anthropic_client_streams(gw: RunningGateway) -> None:
    client = anthropic.AsyncAnthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    events = await client.messages.create(
        model="claude-opus-4-1", max_tokens=100, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    kinds = []
    async for event in events:
        kinds.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    assert text == ANSWER
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    await client.close()


# --- the fake itself: it must reject what the real API rejects, or the tests above prove little -------


def _post_to_fake(fake: FakeServer, body: JSONObject, headers: dict[str, str]) -> tuple[int, JSONObject]:
    request = urllib.request.Request(
        fake.base_url + "/v1/messages", data=orjson.dumps(body), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.mark.parametrize(
    ("change", "headers", "status", "fragment"),
    [
        ({"seed": 7}, None, 400, "seed: Extra inputs are not permitted"),
        ({"max_tokens": None}, None, 400, "max_tokens"),
        ({"messages": [{"role": "system", "content": "x"}]}, None, 400, "role"),
        ({}, {"x-api-key": ""}, 401, "x-api-key"),
        ({}, {"anthropic-version": ""}, 400, "anthropic-version"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}]},
            None,
            400,
            "tool_use_id",
        ),
    ],
)
def test_fake_validates_like_the_real_api(
    fake_anthropic: FakeServer, change: JSONObject, headers: dict[str, str] | None, status: int, fragment: str
) -> None:
    body: JSONObject = {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    sent_headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    sent_headers.update(headers or {})
    got, error = _post_to_fake(fake_anthropic, body, {k: v for k, v in sent_headers.items() if v})
    assert got == status
    assert error["type"] == "error"
    detail = error["error"]
    assert isinstance(detail, dict)
    assert fragment in str(detail["message"])
