"""Names and locations through a real gateway: the provider sees <PERSON_1>, reversible mode gives the name back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway
from tests.ner import require_model
from tollgate.config.loader import ConfigError

NAME = "Maria Gonzalez"
CITY = "Lisbon"
PROMPT = f"Please draft a short note to {NAME} about her move to {CITY}; cc maria@example.com."
MODEL = "openai/gpt-4o-mini-scenario-echo"  # the fake answers with the prompt it received


def _env(fake: FakeServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake.base_url + "/v1"}


@pytest.fixture(scope="module")
def reversible(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    require_model()
    config = "guardrails:\n  pii: {enabled: true, reversible: true, ner: {enabled: true}}\n"
    with run_gateway(config, _env(fake_openai)) as gw:
        yield gw


@pytest.fixture(scope="module")
def masked(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    require_model()
    config = "guardrails:\n  pii: {enabled: true, ner: {enabled: true, entities: [PERSON]}}\n"
    with run_gateway(config, _env(fake_openai)) as gw:
        yield gw


def test_the_provider_sees_placeholders_and_the_caller_gets_the_name_back(
    reversible: RunningGateway, fake_openai: FakeServer
) -> None:
    client = openai.OpenAI(base_url=reversible.openai_base, api_key=reversible.master_key, max_retries=0)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    sent = json.loads(fake_openai.last.body)["messages"][0]["content"]
    assert sent == "Please draft a short note to <PERSON_1> about her move to <LOCATION_1>; cc <EMAIL_1>."
    assert NAME not in fake_openai.last.body.decode() and CITY not in fake_openai.last.body.decode()
    assert answer.choices[0].message.content == "You wrote: " + PROMPT


def test_streamed_answers_are_restored_across_chunk_boundaries(
    reversible: RunningGateway, fake_openai: FakeServer
) -> None:
    client = openai.OpenAI(base_url=reversible.openai_base, api_key=reversible.master_key, max_retries=0)
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert NAME not in fake_openai.last.body.decode()
    assert text == "You wrote: " + PROMPT  # the fake cut "<PERSON_1>" across 7-character chunks


def test_anthropic_clients_get_the_name_back_too(reversible: RunningGateway, fake_openai: FakeServer) -> None:
    claude = anthropic.Anthropic(base_url=reversible.base_url, api_key=reversible.master_key, max_retries=0)
    message = claude.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": PROMPT}])
    assert NAME not in fake_openai.last.body.decode()
    assert message.content[0].text == "You wrote: " + PROMPT  # type: ignore[union-attr]


def test_without_reversible_mode_the_caller_sees_the_placeholder(
    masked: RunningGateway, fake_openai: FakeServer
) -> None:
    client = openai.OpenAI(base_url=masked.openai_base, api_key=masked.master_key, max_retries=0)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    text = answer.choices[0].message.content or ""
    assert "<PERSON_1>" in text and NAME not in text
    assert CITY in text  # only PERSON was asked for


def test_a_gateway_with_ner_on_and_no_model_does_not_start(fake_openai: FakeServer) -> None:
    require_model()
    config = "guardrails:\n  pii: {enabled: true, ner: {enabled: true, model: en_core_web_not_installed}}\n"
    with pytest.raises(ConfigError, match=r"pip install 'tollgate\[ner\]'"), run_gateway(config, _env(fake_openai)):
        pass
