"""The built-in demo provider through a gateway with no provider configured: every SDK feature works."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.gateway import RunningGateway, run_gateway
from tollgate.providers.demo.engine import DEMO_NOTICE

MODEL = "demo/tollgate-demo"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with run_gateway("", {}) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


@pytest.fixture
def claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def _ask(client: openai.OpenAI, text: str, **params: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **params)


def test_models_list_has_the_demo_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert MODEL in ids


def test_answers_are_deterministic(client: openai.OpenAI) -> None:
    first, again, other = _ask(client, "ping"), _ask(client, "ping"), _ask(client, "pong")
    text = first.choices[0].message.content
    assert text == f'{DEMO_NOTICE} You said: "ping"'
    assert again.choices[0].message.content == text
    assert first.id == again.id
    assert other.choices[0].message.content != text
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None
    assert first.usage.prompt_tokens > 0
    assert first.usage.completion_tokens > 0


def test_max_tokens_cuts_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = _ask(client, "a long question", max_tokens=3)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content is not None
    assert f'{DEMO_NOTICE} You said: "a long question"'.startswith(choice.message.content)
    assert len(choice.message.content) <= 3 * 4


def test_stop_sequence_ends_the_answer_before_it(client: openai.OpenAI) -> None:
    completion = _ask(client, "hello", stop=["demo"])
    assert completion.choices[0].message.content == "This is the Tollgate "
    assert completion.choices[0].finish_reason == "stop"


def test_n_returns_that_many_choices(client: openai.OpenAI) -> None:
    completion = _ask(client, "two please", n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].message.content == completion.choices[1].message.content


def test_json_object_is_valid_json(client: openai.OpenAI) -> None:
    completion = _ask(client, "json please", response_format={"type": "json_object"})
    data = json.loads(completion.choices[0].message.content or "")
    assert isinstance(data, dict)
    assert data["demo"] is True


def test_json_schema_answer_matches_the_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "level": {"type": "string", "enum": ["low", "high"]},
        },
        "required": ["name", "age", "tags", "level"],
    }
    completion = _ask(
        client,
        "a person",
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert set(schema["required"]) <= set(data)
    assert isinstance(data["name"], str)
    assert isinstance(data["age"], int)
    assert all(isinstance(t, str) for t in data["tags"])
    assert data["level"] in ("low", "high")


def test_tool_call_arguments_match_the_tool_schema(client: openai.OpenAI) -> None:
    completion = _ask(client, "weather?", tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert {"city", "unit"} <= set(args)
    assert isinstance(args["city"], str)
    assert args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args.get("days", 0), int)
    # After the tool answered, the model speaks about the result.
    follow = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert follow.choices[0].message.content == f"{DEMO_NOTICE} The tool returned: sunny"


def test_tool_choice_none_answers_in_text(client: openai.OpenAI) -> None:
    completion = _ask(client, "weather?", tools=[WEATHER_TOOL], tool_choice="none")
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


def test_stream_with_usage_matches_the_plain_answer(client: openai.OpenAI) -> None:
    plain = _ask(client, "stream me")
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert plain.usage is not None
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_anthropic_sdk_text(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].type == "text"
    assert message.content[0].text == f'{DEMO_NOTICE} You said: "hi"'
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


def test_anthropic_sdk_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "hi"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert final.content[0].type == "text"
    assert final.content[0].text == f'{DEMO_NOTICE} You said: "hi"'
    assert final.usage.output_tokens > 0


def test_anthropic_sdk_tool_use(claude: anthropic.Anthropic) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    message = claude.messages.create(
        model=MODEL, max_tokens=200, tools=[tool], messages=[{"role": "user", "content": "weather?"}]
    )
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert block.input == {"city": "demo"}


def _post_chat(gw: RunningGateway, headers: dict[str, str], body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        gw.base_url + "/chat",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("auth", ["bearer", "x-api-key"])
def test_simple_chat_api(gw: RunningGateway, auth: str) -> None:
    headers = gw.auth() if auth == "bearer" else {"X-API-Key": gw.master_key}
    status, data = _post_chat(gw, headers, {"prompt": "hello there"})
    assert status == 200
    assert data["response"] == f'{DEMO_NOTICE} You said: "hello there"'
    assert data["model"] == "tollgate-demo"
    assert data["provider"] == "demo"
    assert data["usage"]["completion_tokens"] > 0
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    assert data["cache_hit"] is False
    assert isinstance(data["latency_ms"], int | float)
    assert data["latency_ms"] >= 0
    assert data["request_id"]


def test_simple_chat_api_needs_a_key(gw: RunningGateway) -> None:
    status, data = _post_chat(gw, {}, {"prompt": "hello"})
    assert status == 401
    assert "API key" in json.dumps(data)
