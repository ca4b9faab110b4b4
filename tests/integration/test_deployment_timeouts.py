"""Per-deployment timeouts on a real gateway: first token, first byte and mid-stream stalls, with fallbacks.

The provider's timeouts are long (30 s, as long as the fakes hang), so only the deployment's own shorter
ones can end these calls: a test that passes shows they applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest
from aiohttp import web

from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway


@pytest.fixture(scope="module")
def trickle() -> Iterator[FakeServer]:
    """An OpenAI-style endpoint that answers 200 and then only SSE keep-alive comments, never a chunk."""

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(600):
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(0.05)
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        yield server


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer, trickle: FakeServer) -> Iterator[RunningGateway]:
    config = (
        "providers:\n"
        f"  openai: {{api_key: sk-o, base_url: '{fake_openai.base_url}/v1', timeouts: {{read: 30}}}}\n"
        f"  trickle: {{type: openai, api_key: sk-t, base_url: '{trickle.base_url}/v1', timeouts: {{read: 30}}}}\n"
        "models:\n"
        "  first-token:\n    deployments:\n"
        "      - {provider: trickle, model: gpt-4o-mini, timeouts: {first_token: 0.3}}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
        "  first-token-only:\n    deployments:\n"
        "      - {provider: trickle, model: gpt-4o-mini, timeouts: {first_token: 0.3}}\n"
        "  first-byte:\n    deployments:\n"
        "      - {provider: openai, model: scenario-timeout_before_headers, timeouts: {read: 0.2}}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
        "  stall:\n    deployments:\n"
        "      - {provider: openai, model: scenario-stall_mid_stream, timeouts: {read: 0.2}}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    with run_gateway(config) as running:
        yield running


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0, timeout=10)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_stream_without_a_first_token_in_time_falls_back(gw: RunningGateway, trickle: FakeServer) -> None:
    before = len(trickle.requests)
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="first-token",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    assert raw.headers["x-tollgate-deployment"] == "openai/gpt-4o-mini"
    assert raw.headers["x-tollgate-attempts"] == "2" and raw.headers["x-tollgate-fallback"] == "true"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text
    assert len(trickle.requests) == before + 1


def test_a_lone_deployment_without_a_first_token_is_a_504(gw: RunningGateway) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        list(_client(gw).chat.completions.create(model="first-token-only", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert info.value.status_code == 504
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "provider_timeout"
    assert "no first token within 0.3s" in body["message"]


def test_the_deployments_read_timeout_overrides_the_providers(gw: RunningGateway) -> None:
    raw = _client(gw).chat.completions.with_raw_response.create(model="first-byte", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.headers["x-tollgate-deployment"] == "openai/gpt-4o-mini"
    assert raw.headers["x-tollgate-attempts"] == "2"
    assert raw.parse().choices[0].message.content


def test_a_stall_mid_stream_is_cut_by_the_deployments_read_timeout_without_a_retry(gw: RunningGateway) -> None:
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="stall",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    assert raw.headers["x-tollgate-deployment"] == "openai/scenario-stall_mid_stream"
    chunks = iter(raw.parse())
    assert next(chunks).choices  # the first chunks arrive before the stall
    with pytest.raises(openai.APIError) as info:
        list(chunks)
    assert "mid-stream" in str(info.value)
    assert raw.headers["x-tollgate-attempts"] == "1"  # committed at the first chunk: no second call
