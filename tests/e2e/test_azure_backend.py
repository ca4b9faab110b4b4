"""The openai SDK against a gateway whose backend is Azure OpenAI (the fake OpenAI serves its paths)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, Recorded, serve
from tests.gateway import RunningGateway, run_gateway

AZURE_KEY = "azure-upstream-secret"
API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def fake_azure() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


@pytest.fixture(scope="module")
def gw(fake_azure: FakeServer) -> Iterator[RunningGateway]:
    env = {
        "AZURE_OPENAI_API_KEY": AZURE_KEY,
        "AZURE_OPENAI_ENDPOINT": fake_azure.base_url,
        "OPENAI_API_VERSION": API_VERSION,
    }
    with run_gateway("", env) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


def _assert_azure_auth(upstream: Recorded, key: str = AZURE_KEY) -> None:
    assert upstream.headers["api-key"] == key
    # Azure takes the key in api-key only; it must not also travel as a bearer token.
    assert key not in upstream.headers.get("Authorization", "")


def test_chat_uses_the_deployment_path_api_version_and_api_key(client: openai.OpenAI, fake_azure: FakeServer) -> None:
    resp = client.chat.completions.with_raw_response.create(
        model="azure/my-gpt4o-deployment", messages=[{"role": "user", "content": "hi"}], temperature=0.5
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == openai_server.ANSWER
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert resp.headers["x-tollgate-provider"] == "azure"
    assert resp.headers["x-tollgate-model"] == "my-gpt4o-deployment"
    upstream = fake_azure.last
    assert upstream.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert upstream.query == {"api-version": API_VERSION}
    _assert_azure_auth(upstream)
    sent = json.loads(upstream.body)
    assert sent["temperature"] == 0.5
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_stream_with_usage(client: openai.OpenAI, fake_azure: FakeServer) -> None:
    chunks = list(
        client.chat.completions.create(
            model="azure/my-gpt4o-deployment",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == openai_server.ANSWER
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert fake_azure.last.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    _assert_azure_auth(fake_azure.last)


def test_stream_without_usage_is_still_metered_upstream(client: openai.OpenAI, fake_azure: FakeServer) -> None:
    chunks = list(
        client.chat.completions.create(
            model="azure/my-gpt4o-deployment", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert json.loads(fake_azure.last.body)["stream_options"] == {"include_usage": True}


def test_embeddings(client: openai.OpenAI, fake_azure: FakeServer) -> None:
    result = client.embeddings.create(model="azure/my-embedding-deployment", input=["a", "b"])
    assert [d.embedding for d in result.data] == [[0.1, 0.2, 0.3]] * 2
    assert result.usage.prompt_tokens == 4
    upstream = fake_azure.last
    assert upstream.path == "/openai/deployments/my-embedding-deployment/embeddings"
    assert upstream.query == {"api-version": API_VERSION}
    _assert_azure_auth(upstream)


def test_rate_limit_maps_to_429_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="azure/scenario-429_retry_after", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert "azure" in info.value.message


def test_upstream_auth_failure_is_502_without_the_key(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="azure/scenario-401", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert AZURE_KEY not in info.value.response.text


def test_named_azure_providers_from_yaml(fake_azure: FakeServer) -> None:
    config = """
providers:
  azure-eu:
    type: azure
    api_key: ${AZURE_EU_KEY}
    base_url: ${FAKE_AZURE}
    api_version: "2024-06-01"  # quoted: YAML reads a bare date as a date, not a string
  azure-us:
    type: azure
    api_key: ${AZURE_US_KEY}
    base_url: ${FAKE_AZURE}/openai/
    api_version: 2025-01-01-preview
models:
  gpt4o:
    deployments:
      - {provider: azure-eu, model: scenario-500}
      - {provider: azure-us, model: gpt4o-us}
"""
    env = {"AZURE_EU_KEY": "eu-secret", "AZURE_US_KEY": "us-secret", "FAKE_AZURE": fake_azure.base_url}
    with run_gateway(config, env) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        messages = [{"role": "user", "content": "hi"}]

        client.chat.completions.create(model="azure-eu/gpt4o-eu", messages=messages)
        eu = fake_azure.last
        assert eu.path == "/openai/deployments/gpt4o-eu/chat/completions"
        assert eu.query == {"api-version": "2024-06-01"}
        _assert_azure_auth(eu, "eu-secret")

        client.chat.completions.create(model="azure-us/gpt4o-us", messages=messages)
        us = fake_azure.last
        assert us.path == "/openai/deployments/gpt4o-us/chat/completions"  # the trailing /openai is not doubled
        assert us.query == {"api-version": "2025-01-01-preview"}
        _assert_azure_auth(us, "us-secret")

        # The alias falls back from the failing EU deployment to the US one.
        resp = client.chat.completions.with_raw_response.create(model="gpt4o", messages=messages)
        assert resp.parse().choices[0].message.content == openai_server.ANSWER
        assert resp.headers["x-tollgate-provider"] == "azure-us"
        assert resp.headers["x-tollgate-attempts"] == "2"
        assert [r.headers["api-key"] for r in fake_azure.requests[-2:]] == ["eu-secret", "us-secret"]
