"""The output content filter through the real gateway, with the official SDKs as clients.

The fake provider answers "Hello from the fake OpenAI.", streamed as "Hello", " from", " the", " fake",
" OpenAI.": the phrases below are split across stream chunks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes import anthropic_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway

MODEL = "openai/gpt-4o-mini"
MASK = """
guardrails:
  output_filter:
    enabled: true
    placeholder: "[{category}]"
    categories:
      vendor: {words: ["the fake"], action: mask}
      greeting: {patterns: ["hel+o"], action: flag}
"""
BLOCK = """
guardrails:
  output_filter:
    enabled: true
    categories:
      vendor_name: {words: ["fake OpenAI"], action: block}
"""


def _env(fake_openai: FakeServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}


@pytest.fixture(scope="module")
def masking(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(MASK, _env(fake_openai)) as gw:
        yield gw


@pytest.fixture(scope="module")
def blocking(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(BLOCK, _env(fake_openai)) as gw:
        yield gw


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"say hello [{uuid.uuid4().hex}]"}]


def test_masked_answers_streamed_and_not(masking: RunningGateway) -> None:
    raw = client(masking).chat.completions.with_raw_response.create(model=MODEL, messages=_messages())  # type: ignore[arg-type]
    assert raw.parse().choices[0].message.content == "Hello from [vendor] OpenAI."
    stream = client(masking).chat.completions.create(model=MODEL, messages=_messages(), stream=True)  # type: ignore[arg-type]
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from [vendor] OpenAI."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_masked_answer_is_never_cached(masking: RunningGateway, fake_openai: FakeServer) -> None:
    messages = _messages()
    for stream in (False, True, False):
        before = len(fake_openai.requests)
        if stream:
            list(client(masking).chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True))  # type: ignore[arg-type]
        else:
            raw = client(masking).chat.completions.with_raw_response.create(
                model=MODEL,
                messages=messages,  # type: ignore[arg-type]
                temperature=0,
            )
            assert raw.headers["x-tollgate-cache"] == "miss"
            assert raw.parse().choices[0].message.content == "Hello from [vendor] OpenAI."
        assert len(fake_openai.requests) == before + 1  # the provider is asked every time


def test_blocked_answer_is_a_403_and_a_blocked_stream_ends_with_an_error_event(blocking: RunningGateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(blocking).chat.completions.create(model=MODEL, messages=_messages())  # type: ignore[arg-type]
    assert info.value.code == "output_blocked" and "vendor_name" in info.value.message
    assert "fake OpenAI" not in info.value.response.text
    stream = client(blocking).chat.completions.create(model=MODEL, messages=_messages(), stream=True)  # type: ignore[arg-type]
    got: list[str] = []

    def read() -> None:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "" if chunk.choices else "")

    with pytest.raises(openai.APIError) as streamed:
        read()
    assert "output_blocked" in str(streamed.value.body) or "vendor_name" in streamed.value.message
    assert "fake" not in "".join(got)  # the text before the match may go out; the match never does


def test_blocked_stream_is_not_cached(blocking: RunningGateway, fake_openai: FakeServer) -> None:
    messages = _messages()
    for _ in range(2):
        before = len(fake_openai.requests)
        with pytest.raises(openai.APIError):
            list(client(blocking).chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True))  # type: ignore[arg-type]
        assert len(fake_openai.requests) == before + 1


def test_anthropic_stream_masked_and_blocked(masking: RunningGateway, blocking: RunningGateway) -> None:
    claude = anthropic.Anthropic(base_url=masking.base_url, api_key=masking.master_key, max_retries=0)
    with claude.messages.stream(model=MODEL, max_tokens=50, messages=_messages()) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from [vendor] OpenAI."
    assert final.stop_reason == "end_turn"
    claude = anthropic.Anthropic(base_url=blocking.base_url, api_key=blocking.master_key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model=MODEL, max_tokens=50, messages=_messages())  # type: ignore[arg-type]
    assert info.value.status_code == 403 and "output_blocked" in info.value.response.text

    def read() -> str:
        with claude.messages.stream(model=MODEL, max_tokens=50, messages=_messages()) as stream:  # type: ignore[arg-type]
            return "".join(stream.text_stream)

    with pytest.raises(anthropic.APIError) as streamed:
        read()
    assert "vendor_name" in str(streamed.value)


def test_flag_only_answers_carry_the_flag_header(masking: RunningGateway, fake_openai: FakeServer) -> None:
    raw = client(masking).chat.completions.with_raw_response.create(model=MODEL, messages=_messages())  # type: ignore[arg-type]
    assert raw.headers["x-tollgate-guardrail"] == "flagged"
    assert raw.headers["x-tollgate-guardrail-rules"] == "greeting"
    assert json.loads(fake_openai.last.body)["messages"][0]["content"].startswith("say hello")


def test_anthropic_clients_of_an_anthropic_provider_are_filtered_too() -> None:
    """Anthropic to Anthropic is normally forwarded as the provider's bytes; with the filter on it is screened."""
    config = "guardrails:\n  output_filter: {enabled: true, categories: {vendor: {words: [fake], action: mask}}}\n"
    with serve(anthropic_server.make_app()) as fake:
        env = {"ANTHROPIC_API_KEY": "sk-ant-upstream", "ANTHROPIC_BASE_URL": fake.base_url}
        with run_gateway(config, env) as gw:
            claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
            model = "anthropic/claude-haiku-4-5"
            message = claude.messages.create(model=model, max_tokens=50, messages=_messages())  # type: ignore[arg-type]
            assert message.content[0].text == "Hello from the [FILTERED] Anthropic."  # type: ignore[union-attr]
            with claude.messages.stream(model=model, max_tokens=50, messages=_messages()) as stream:  # type: ignore[arg-type]
                assert "".join(stream.text_stream) == "Hello from the [FILTERED] Anthropic."
