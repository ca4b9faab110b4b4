"""The openai and anthropic SDKs against a gateway whose backend is a (fake) Ollama found via OLLAMA_HOST."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes import ollama_server
from tests.fakes.harness import FakeServer, serve
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
def fake_ollama() -> Iterator[FakeServer]:
    with serve(ollama_server.make_app()) as server:
        yield server


@pytest.fixture(scope="module")
def gw(fake_ollama: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway("", {"OLLAMA_HOST": fake_ollama.base_url}) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


@pytest.fixture
def claude(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)


def _sent(fake: FakeServer) -> dict:
    body = json.loads(fake.last.body)
    assert isinstance(body, dict)
    return body


def test_chat_goes_to_native_api_chat_without_credentials(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="ollama/llama3.2",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        temperature=0.3,
        max_tokens=100,
        seed=11,
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == ollama_server.ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(ollama_server.ANSWER_PIECES)
    assert completion.usage.prompt_tokens > 0
    assert resp.headers["x-tollgate-provider"] == "ollama"
    upstream = fake_ollama.last
    assert upstream.path == "/api/chat"
    assert "Authorization" not in upstream.headers
    sent = _sent(fake_ollama)
    assert sent["model"] == "llama3.2"
    assert sent["stream"] is False
    assert sent["options"] == {"temperature": 0.3, "seed": 11, "num_predict": 100}


def test_max_tokens_cut_is_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="ollama/llama3.2", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert completion.choices[0].message.content == "Hello from"
    assert completion.choices[0].finish_reason == "length"


def test_stream_with_usage(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    stream = client.chat.completions.create(
        model="ollama/llama3.2",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert _sent(fake_ollama)["stream"] is True
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ollama_server.ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(ollama_server.ANSWER_PIECES)


def test_stream_without_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="ollama/llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_tool_call_and_tool_result_round_trip(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    completion = client.chat.completions.create(model="ollama/llama3.2", messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_0_")
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    answer = client.chat.completions.create(model="ollama/llama3.2", messages=messages, tools=[WEATHER_TOOL])
    assert answer.choices[0].message.content == "The tool said: 18C and sunny (get_weather)"
    sent = _sent(fake_ollama)["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "18C and sunny", "tool_name": "get_weather"}


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="ollama/llama3.2",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls = []
    finish = None
    for c in stream:
        if c.choices:
            calls += c.choices[0].delta.tool_calls or []
            finish = c.choices[0].finish_reason or finish
    assert len(calls) == 1
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    assert finish == "tool_calls"


def test_json_object_and_json_schema_formats(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    completion = client.chat.completions.create(
        model="ollama/llama3.2",
        messages=[{"role": "user", "content": "greet in JSON"}],
        response_format={"type": "json_object"},
    )
    assert _sent(fake_ollama)["format"] == "json"
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "Hello"}
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    completion = client.chat.completions.create(
        model="ollama/llama3.2",
        messages=[{"role": "user", "content": "age?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "age", "schema": schema}},
    )
    assert _sent(fake_ollama)["format"] == schema
    assert json.loads(completion.choices[0].message.content or "") == {"age": 42}


def test_base64_image_reaches_ollama_and_url_image_is_400(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    client.chat.completions.create(model="ollama/llama3.2", messages=[{"role": "user", "content": content}])
    assert _sent(fake_ollama)["messages"][0] == {
        "role": "user",
        "content": "what is this?",
        "images": ["iVBORw0KGgo="],
    }
    remote = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="ollama/llama3.2", messages=[{"role": "user", "content": remote}])
    assert "https://example.com/cat.png" in info.value.message


def test_embeddings(client: openai.OpenAI, fake_ollama: FakeServer) -> None:
    # The SDK asks for base64 by default and decodes it: the floats must survive the trip.
    result = client.embeddings.create(model="ollama/nomic-embed-text", input=["a", "b"])
    assert [d.embedding for d in result.data] == [ollama_server.EMBEDDING] * 2
    assert result.usage.prompt_tokens == 8
    assert fake_ollama.last.path == "/api/embed"
    assert _sent(fake_ollama)["input"] == ["a", "b"]
    floats = client.embeddings.create(model="ollama/nomic-embed-text", input="a", encoding_format="float")
    assert floats.data[0].embedding == ollama_server.EMBEDDING


def test_cut_stream_ends_with_an_error_event(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="ollama/scenario-cut_stream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "ended the stream" in info.value.message or "broke the connection" in info.value.message


def test_error_mid_stream_reaches_the_client(client: openai.OpenAI) -> None:
    pieces: list[str] = []

    def read_all() -> None:
        # Whether the error line arrives in the same read as the text before it (then the gateway
        # answers 502 before streaming) or later (then an error event ends the stream) is up to TCP.
        stream = client.chat.completions.create(
            model="ollama/scenario-error_mid_stream", messages=[{"role": "user", "content": "x"}], stream=True
        )
        for c in stream:
            pieces.append((c.choices[0].delta.content or "") if c.choices else "")

    with pytest.raises(openai.APIError) as info:
        read_all()
    assert "Hello from".startswith("".join(pieces))
    assert "error was encountered while running the model" in info.value.message


def test_model_not_found_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="ollama/scenario-404", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert "not found" in info.value.message


def test_server_error_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="ollama/scenario-500", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert "ollama" in info.value.message


def test_garbage_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="ollama/scenario-garbage", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502


def test_timeout_before_headers_is_504(fake_ollama: FakeServer) -> None:
    config = """
providers:
  slow-ollama:
    type: ollama
    base_url: ${FAKE_OLLAMA}
    timeouts: {read: 1}
"""
    with run_gateway(config, {"FAKE_OLLAMA": fake_ollama.base_url}) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(
                model="slow-ollama/scenario-timeout_before_headers",
                messages=[{"role": "user", "content": "x"}],
            )
    assert info.value.status_code == 504


def test_anthropic_sdk_message(claude: anthropic.Anthropic, fake_ollama: FakeServer) -> None:
    message = claude.messages.create(
        model="ollama/llama3.2",
        max_tokens=50,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == ollama_server.ANSWER
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == len(ollama_server.ANSWER_PIECES)
    sent = _sent(fake_ollama)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["options"]["num_predict"] == 50


def test_anthropic_sdk_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="ollama/llama3.2", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert final.content[0].type == "text"
    assert final.content[0].text == ollama_server.ANSWER
    assert final.usage.output_tokens == len(ollama_server.ANSWER_PIECES)


def test_anthropic_sdk_tool_use(claude: anthropic.Anthropic) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    message = claude.messages.create(
        model="ollama/llama3.2",
        max_tokens=50,
        tools=[tool],
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather"
    assert block.input == {"city": "Paris"}
