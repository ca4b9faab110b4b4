"""Token caps through the real gateway, with the official SDKs as clients."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

MODEL = "openai/gpt-4o-mini"


def _env(fake_openai: FakeServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}


@pytest.fixture(scope="module")
def capped(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    config = "guardrails:\n  caps: {enabled: true, max_prompt_tokens: 200, max_output_tokens: 100}\n"
    with run_gateway(config, _env(fake_openai)) as gw:
        yield gw


def client(gw: RunningGateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key or gw.master_key, max_retries=0)


def test_over_the_caps_is_a_400_naming_the_cap(capped: RunningGateway, fake_openai: FakeServer) -> None:
    before = len(fake_openai.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client(capped).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 2000}])
    assert info.value.code == "prompt_too_large" and "cap of 200" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client(capped).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=500
        )
    assert info.value.code == "max_tokens_too_large" and "cap of 100" in info.value.message
    assert info.value.param == "max_tokens"
    assert len(fake_openai.requests) == before  # refused before the provider


def test_within_the_caps_the_cap_is_sent_when_none_was_asked(capped: RunningGateway, fake_openai: FakeServer) -> None:
    answer = client(capped).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "Hello from the fake OpenAI."
    assert json.loads(fake_openai.last.body)["max_tokens"] == 100
    client(capped).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    assert json.loads(fake_openai.last.body)["max_tokens"] == 20


def test_anthropic_clients_get_the_error_in_their_format(capped: RunningGateway) -> None:
    claude = anthropic.Anthropic(base_url=capped.base_url, api_key=capped.master_key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "cap of 100" in info.value.body["error"]["message"]  # type: ignore[index]


def test_clamp_mode_and_a_per_key_cap(fake_openai: FakeServer) -> None:
    config = "guardrails:\n  caps: {enabled: true, max_output_tokens: 300, output_action: clamp}\n"
    with run_gateway(config, _env(fake_openai)) as gw:
        client(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5000)
        assert json.loads(fake_openai.last.body)["max_tokens"] == 300
        body = json.dumps({"name": "tight", "metadata": {"max_output_tokens": 40}}).encode()
        req = urllib.request.Request(
            gw.base_url + "/admin/keys", body, {**gw.auth(), "content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            key = json.loads(resp.read())["key"]
        client(gw, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
        assert json.loads(fake_openai.last.body)["max_tokens"] == 40
