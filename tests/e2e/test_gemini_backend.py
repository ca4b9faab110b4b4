"""The official openai and anthropic SDKs against a running gateway whose backend is the fake Gemini API."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import orjson
import pytest

from tests.fakes import gemini_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway

KEY = gemini_server.API_KEY
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeServer]:
    with serve(gemini_server.make_app()) as server:
        yield server


@pytest.fixture(scope="module")
def gw(fake_gemini: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway("", {"GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": fake_gemini.base_url}) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


@pytest.fixture
def claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def upstream_body(fake: FakeServer) -> dict:  # type: ignore[type-arg]
    return orjson.loads(fake.last.body)  # type: ignore[no-any-return]


# -- openai SDK ---------------------------------------------------------------------------------------


def test_chat_reaches_gemini_with_the_key_in_a_header(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="gemini/gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be brief."}, *USER],
        temperature=0.2,
        max_tokens=50,
        stop=["END"],
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == gemini_server.ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gemini-2.5-flash"
    usage = completion.usage
    assert usage is not None
    # Thinking tokens are output the caller pays for.
    assert usage.completion_tokens == gemini_server.OUTPUT_TOKENS + gemini_server.THOUGHT_TOKENS
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert resp.headers["x-tollgate-provider"] == "gemini"
    upstream = fake_gemini.last
    assert upstream.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert upstream.headers["x-goog-api-key"] == KEY
    assert "key" not in upstream.query
    assert upstream_body(fake_gemini) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"]},
    }


def test_bare_catalog_name_resolves_to_gemini(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    completion = client.chat.completions.create(model="gemini-2.5-flash", messages=USER)
    assert completion.choices[0].message.content == gemini_server.ANSWER
    assert fake_gemini.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_streaming_with_usage(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    stream = client.chat.completions.create(
        model="gemini/gemini-2.5-flash", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert fake_gemini.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert fake_gemini.last.query == {"alt": "sse"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == gemini_server.ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 10


def test_streaming_without_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_several_candidates_become_several_choices(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    completion = client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content == gemini_server.ANSWER for c in completion.choices)
    assert upstream_body(fake_gemini)["generationConfig"] == {"candidateCount": 2}


def test_tool_call_with_a_cleaned_schema(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    completion = client.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        tool_choice="required",
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    body = upstream_body(fake_gemini)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_tool_call_stream_matches_the_non_streamed_call(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "weather?"}]
    whole = client.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=messages,
        tools=[WEATHER_TOOL],
    )
    chunks = list(
        client.chat.completions.create(
            model="gemini/gemini-2.5-flash",
            messages=messages,
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1
    assert whole.choices[0].message.tool_calls is not None
    expected = whole.choices[0].message.tool_calls[0]
    assert deltas[0].index == 0
    assert deltas[0].id == expected.id
    assert deltas[0].function is not None
    assert deltas[0].function.name == "get_weather"
    assert deltas[0].function.arguments == expected.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_result_goes_back_as_a_function_response(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    completion = client.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_abc", "content": '{"forecast": "Sunny"}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert completion.choices[0].message.content == 'The tool said: {"forecast":"Sunny"}'
    assert upstream_body(fake_gemini)["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"forecast": "Sunny"}}}],
        },
    ]


def test_json_schema_response_format_reaches_gemini(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model="gemini/gemini-2.5-flash",
        messages=USER,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
    )
    assert orjson.loads(completion.choices[0].message.content or "") == {"answer": gemini_server.ANSWER}
    config = upstream_body(fake_gemini)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


def test_embeddings_default_base64_and_float(client: openai.OpenAI, fake_gemini: FakeServer) -> None:
    # The openai SDK asks for base64 unless told otherwise and decodes it; the gateway packs Gemini's floats.
    result = client.embeddings.create(model="gemini/gemini-embedding-001", input=["a", "bb"])
    assert [d.embedding for d in result.data] == [[0.5, 0.25, 0.125]] * 2
    assert [d.index for d in result.data] == [0, 1]
    assert fake_gemini.last.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert fake_gemini.last.headers["x-goog-api-key"] == KEY
    floats = client.embeddings.create(
        model="gemini-embedding-001", input="abcdefgh", dimensions=4, encoding_format="float"
    )
    assert floats.data[0].embedding == [0.5, 0.25, 0.125, 0.0625]
    assert floats.usage.prompt_tokens == 2  # estimated: Gemini reports no token counts for embeddings
    assert upstream_body(fake_gemini) == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "abcdefgh"}]},
                "outputDimensionality": 4,
            }
        ]
    }


def test_unsupported_parameter_is_a_400_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=USER, logit_bias={"1": 5})
    assert "logit_bias" in info.value.message


def test_429_maps_to_rate_limit_with_gemini_retry_delay(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gemini/scenario-429_retry_after", messages=USER)
    assert info.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("scenario", ["401", "403"])  # 400 API_KEY_INVALID, 403 PERMISSION_DENIED
def test_rejected_key_is_a_502_naming_the_provider_not_the_key(client: openai.OpenAI, scenario: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=f"gemini/scenario-{scenario}", messages=USER)
    assert info.value.status_code == 502
    assert info.value.code == "provider_auth_error"
    assert "gemini" in info.value.message
    assert "API key" in info.value.message
    assert KEY not in info.value.response.text


def test_overloaded_gemini_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gemini/scenario-503", messages=USER)
    assert info.value.status_code == 502
    assert "overloaded" in info.value.message


def test_garbage_from_gemini_is_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="gemini/scenario-garbage", messages=USER)
    assert info.value.status_code == 502


def test_safety_block_is_content_filter(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gemini/scenario-safety", messages=USER)
    assert completion.choices[0].finish_reason == "content_filter"
    assert not completion.choices[0].message.content
    chunks = list(client.chat.completions.create(model="gemini/scenario-safety", messages=USER, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    blocked = client.chat.completions.create(model="gemini/scenario-blocked", messages=USER)
    assert blocked.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("scenario", "message"),
    [("cut_stream", "broke the connection"), ("unfinished_stream", "ended the stream before it finished")],
)
def test_cut_stream_ends_with_an_error(client: openai.OpenAI, scenario: str, message: str) -> None:
    stream = client.chat.completions.create(model=f"gemini/scenario-{scenario}", messages=USER, stream=True)
    pieces: list[str] = []

    def read_all() -> None:
        pieces.extend(c.choices[0].delta.content or "" for c in stream if c.choices)

    with pytest.raises(openai.APIError) as info:
        read_all()
    assert "".join(pieces) == "Hello from the"  # what arrived before the cut still reached the client
    assert message in str(info.value.message)


# -- anthropic SDK ------------------------------------------------------------------------------------


def test_anthropic_messages_create(claude: anthropic.Anthropic, fake_gemini: FakeServer) -> None:
    message = claude.messages.create(
        model="gemini/gemini-2.5-flash",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == gemini_server.ANSWER
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 10
    assert message.usage.input_tokens > 0
    body = upstream_body(fake_gemini)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 100}


def test_anthropic_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="gemini-2.5-flash", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == gemini_server.ANSWER
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 10


def test_anthropic_tool_use_round_trip(claude: anthropic.Anthropic, fake_gemini: FakeServer) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    question = {"role": "user", "content": "weather in Paris?"}
    first = claude.messages.create(
        model="gemini/gemini-2.5-flash",
        max_tokens=100,
        messages=[question],
        tools=[tool],
    )
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}
    second = claude.messages.create(
        model="gemini/gemini-2.5-flash",
        max_tokens=100,
        tools=[tool],
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21C"}],
            },
        ],
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == 'The tool said: {"content":"Sunny, 21C"}'
    last_turn = upstream_body(fake_gemini)["contents"][-1]
    assert last_turn == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "Sunny, 21C"}}}],
    }


@pytest.mark.parametrize("scenario", ["no_usage", "malformed_usage"])
def test_missing_or_malformed_usage_still_answers(client: openai.OpenAI, scenario: str) -> None:
    completion = client.chat.completions.create(model=f"gemini/scenario-{scenario}", messages=USER)
    assert completion.choices[0].message.content == gemini_server.ANSWER
    assert completion.usage is None
    stream = client.chat.completions.create(
        model=f"gemini/scenario-{scenario}",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == gemini_server.ANSWER
    assert all(c.usage is None for c in chunks)
