"""PII masking wired into the gateway: the provider never sees the values; reversible mode gives them back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aiohttp
import anthropic
import openai
import pytest

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PROMPT = f"Email {EMAIL} about card {CARD}, please."


@pytest.fixture(scope="module")
def masked(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    config = "guardrails:\n  pii: {enabled: true, actions: {US_SSN: block}}\n"
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway(config, env) as gw:
        yield gw


@pytest.fixture(scope="module")
def reversible() -> Iterator[RunningGateway]:
    with run_gateway("guardrails:\n  pii: {enabled: true, reversible: true}\n", {}) as gw:
        yield gw


def test_the_provider_sees_placeholders_not_values(masked: RunningGateway, fake_openai: FakeServer) -> None:
    client = openai.OpenAI(base_url=masked.openai_base, api_key=masked.master_key, max_retries=0)
    answer = client.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}],
    )
    assert answer.choices[0].message.content == "Hello from the fake OpenAI."
    sent = json.loads(fake_openai.last.body)
    user_text = sent["messages"][1]["content"]
    assert EMAIL not in fake_openai.last.body.decode() and "4111" not in fake_openai.last.body.decode()
    assert "<EMAIL_1>" in user_text and "<CREDIT_CARD_1>" in user_text
    # Streams are masked the same way.
    list(
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    assert EMAIL not in fake_openai.last.body.decode()


def test_blocked_types_are_named_never_shown(masked: RunningGateway, fake_openai: FakeServer) -> None:
    before = len(fake_openai.requests)
    client = openai.OpenAI(base_url=masked.openai_base, api_key=masked.master_key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "my SSN is 123-45-6789"}]
        )
    assert "US_SSN" in info.value.message and "123-45-6789" not in info.value.response.text
    assert len(fake_openai.requests) == before  # refused before anything went upstream


async def test_simple_chat_and_embeddings_are_masked(masked: RunningGateway, fake_openai: FakeServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            masked.base_url + "/chat", headers=masked.auth(), json={"prompt": PROMPT, "model": "openai/gpt-4o-mini"}
        ) as resp:
            assert resp.status == 200
        assert EMAIL not in fake_openai.last.body.decode()
        async with session.post(
            masked.openai_base + "/embeddings",
            headers=masked.auth(),
            json={"model": "openai/text-embedding-3-small", "input": [PROMPT]},
        ) as resp:
            assert resp.status == 200
        assert EMAIL not in fake_openai.last.body.decode()


def test_reversible_mode_restores_values_for_the_caller(reversible: RunningGateway) -> None:
    # The demo model echoes the prompt it received: masked upstream, restored for the caller.
    client = openai.OpenAI(base_url=reversible.openai_base, api_key=reversible.master_key, max_retries=0)
    answer = client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": PROMPT}])
    assert EMAIL in (answer.choices[0].message.content or "")
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="demo/tollgate-demo", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        if c.choices
    )
    assert EMAIL in streamed and "<EMAIL_1>" not in streamed
    claude = anthropic.Anthropic(base_url=reversible.base_url, api_key=reversible.master_key, max_retries=0)
    message = claude.messages.create(
        model="demo/tollgate-demo", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    )
    assert EMAIL in message.content[0].text  # type: ignore[union-attr]


def test_without_reversible_mode_the_caller_sees_the_placeholders(masked: RunningGateway) -> None:
    client = openai.OpenAI(base_url=masked.openai_base, api_key=masked.master_key, max_retries=0)
    answer = client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": PROMPT}])
    text = answer.choices[0].message.content or ""
    assert "<EMAIL_1>" in text and EMAIL not in text
