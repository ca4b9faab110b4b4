"""The webhook guardrail through the real gateway: a fake policy service on loopback, the openai SDK as client.

The fake service decides from the request's metadata ``{"policy": ...}`` (which the gateway passes on), and
records every payload it got with its signature header."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.fakes import anthropic_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import MASTER_KEY, RunningGateway, run_gateway

MODEL = "openai/gpt-4o-mini"
SECRET = "whsec-test-0123456789"


async def _decide(request: web.Request) -> web.Response:
    payload = await request.json()
    policy = (payload.get("metadata") or {}).get("policy", "allow")
    stage, _, wanted = policy.rpartition(":")  # "block" (the request stage) or "response:block"
    stage = stage or "request"
    if payload["stage"] != stage:
        return web.json_response({"action": "allow"})
    if wanted == "block":
        return web.json_response({"action": "block", "reason": "Customer data may not be sent.", "rule": "acme.dlp"})
    if wanted == "modify" and stage == "request":
        messages = [*payload["messages"][:-1], {"role": "user", "content": "rewritten by the policy service"}]
        return web.json_response({"action": "modify", "messages": messages})
    if wanted == "modify":
        return web.json_response({"action": "modify", "content": "The answer, as approved."})
    if wanted == "slow":
        await asyncio.sleep(2)
    if wanted == "broken":
        return web.Response(status=500, text="boom")
    if wanted == "garbage":
        return web.json_response({"verdict": "ok"})
    return web.json_response({"action": "allow"})


@pytest.fixture(scope="module")
def policy_service() -> Iterator[FakeServer]:
    app = web.Application()
    app.router.add_post("/decide", _decide)
    with serve(app) as server:
        yield server


def _config(service: FakeServer, failure: str, stream_mode: str = "buffer") -> str:
    return (
        "guardrails:\n  webhook:\n    enabled: true\n    on_response: true\n"
        f"    url: {service.base_url}/decide\n    timeout_seconds: 1.0\n    failure: {failure}\n"
        f"    secret: ${{WEBHOOK_SECRET}}\n    stream_mode: {stream_mode}\n"
    )


def _env(fake_openai: FakeServer) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-upstream-secret",
        "OPENAI_BASE_URL": fake_openai.base_url + "/v1",
        "WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture(scope="module")
def closed(fake_openai: FakeServer, policy_service: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config(policy_service, "closed"), _env(fake_openai)) as gw:
        yield gw


@pytest.fixture(scope="module")
def open_(fake_openai: FakeServer, policy_service: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config(policy_service, "open"), _env(fake_openai)) as gw:
        yield gw


def _ask(gw: RunningGateway, policy: str, content: str = "hello", stream: bool = False) -> Any:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        extra_body={"metadata": {"policy": policy}},
        stream=stream,
    )


def test_allowed_requests_are_signed_and_carry_no_secrets(closed: RunningGateway, policy_service: FakeServer) -> None:
    before = len(policy_service.requests)
    answer = _ask(closed, "allow", "what is 2+2?")
    assert answer.choices[0].message.content == "Hello from the fake OpenAI."
    calls = policy_service.requests[before:]
    assert [json.loads(c.body)["stage"] for c in calls] == ["request", "response"]
    for call in calls:
        expected = hmac.new(SECRET.encode(), call.body, hashlib.sha256).hexdigest()
        assert call.headers["x-tollgate-signature"] == expected
        for secret in (SECRET, MASTER_KEY, "sk-upstream-secret"):
            assert secret.encode() not in call.body
    request, response = (json.loads(c.body) for c in calls)
    assert request["model"] == MODEL and request["messages"] == [{"role": "user", "content": "what is 2+2?"}]
    assert request["caller"]["key_id"] and request["request_id"] == response["request_id"]
    assert response["answer"][0]["content"] == "Hello from the fake OpenAI."


def test_a_blocked_request_never_reaches_the_provider(closed: RunningGateway, fake_openai: FakeServer) -> None:
    before = len(fake_openai.requests)
    with pytest.raises(openai.PermissionDeniedError) as info:
        _ask(closed, "block")
    assert info.value.code == "webhook_blocked"
    assert "Customer data may not be sent." in info.value.message
    assert len(fake_openai.requests) == before


def test_the_service_may_rewrite_the_request_and_the_answer(closed: RunningGateway, fake_openai: FakeServer) -> None:
    _ask(closed, "modify", "the original question")
    assert json.loads(fake_openai.last.body)["messages"] == [
        {"role": "user", "content": "rewritten by the policy service"}
    ]
    assert _ask(closed, "response:modify").choices[0].message.content == "The answer, as approved."
    with pytest.raises(openai.PermissionDeniedError, match="answer was blocked"):
        _ask(closed, "response:block")


@pytest.mark.parametrize("failure", ["slow", "broken", "garbage"])
def test_fail_closed_and_fail_open(closed: RunningGateway, open_: RunningGateway, failure: str) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        _ask(closed, failure)
    assert info.value.status_code == 503 and info.value.code == "guardrail_unavailable"
    assert _ask(open_, failure).choices[0].message.content == "Hello from the fake OpenAI."


# Streams: the response stage in both stream modes, with the openai and anthropic SDKs.


@pytest.fixture(scope="module")
def post_closed(fake_openai: FakeServer, policy_service: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config(policy_service, "closed", "post"), _env(fake_openai)) as gw:
        yield gw


@pytest.fixture(scope="module")
def post_open(fake_openai: FakeServer, policy_service: FakeServer) -> Iterator[RunningGateway]:
    with run_gateway(_config(policy_service, "open", "post"), _env(fake_openai)) as gw:
        yield gw


ANSWER = "Hello from the fake OpenAI."


def _sse(gw: RunningGateway, policy: str) -> bytes:
    """The raw stream as the client gets it, with the one varying field (created) normalised."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"policy": policy},
    }
    headers = {"authorization": f"Bearer {gw.master_key}"}
    with httpx.stream("POST", gw.openai_base + "/chat/completions", json=body, headers=headers) as resp:
        assert resp.status_code == 200
        raw = resp.read()
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def _streamed(gw: RunningGateway, policy: str, got: list[str]) -> None:
    for chunk in _ask(gw, policy, stream=True):
        got.extend(c.delta.content or "" for c in chunk.choices)


def _claude_stream(gw: RunningGateway, policy: str, got: list[str]) -> str | None:
    claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    with claude.messages.stream(
        model=MODEL,
        max_tokens=50,
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"metadata": {"policy": policy}},
    ) as stream:
        for text in stream.text_stream:
            got.append(text)
        return stream.get_final_message().stop_reason


def test_an_allowed_stream_is_the_same_stream_in_both_modes(
    closed: RunningGateway, post_closed: RunningGateway, fake_openai: FakeServer, policy_service: FakeServer
) -> None:
    buffered = _sse(closed, "allow")
    assert buffered == _sse(post_closed, "allow")
    with run_gateway("", _env(fake_openai)) as plain:  # no webhook: the provider's bytes, relayed
        assert buffered == _sse(plain, "allow")
    assert buffered.endswith(b"data: [DONE]\n\n") and buffered.count(b"data: ") == 9  # with the usage chunk
    got: list[str] = []
    _streamed(closed, "allow", got)
    assert "".join(got) == ANSWER
    for gw in (closed, post_closed):
        claude: list[str] = []
        assert _claude_stream(gw, "allow", claude) == "end_turn" and "".join(claude) == ANSWER


def test_stream_reviews_are_signed_and_carry_the_whole_answer(
    closed: RunningGateway, post_closed: RunningGateway, policy_service: FakeServer
) -> None:
    for gw, sent in ((closed, False), (post_closed, True)):
        before = len(policy_service.requests)
        _streamed(gw, "allow", [])
        request, response = policy_service.requests[before:]
        for call in (request, response):
            assert call.headers["x-tollgate-signature"] == hmac.new(SECRET.encode(), call.body, "sha256").hexdigest()
        payload = json.loads(response.body)
        assert payload["stage"] == "response" and payload["stream"] is True and payload["answer_sent"] is sent
        assert payload["answer"] == [{"index": 0, "content": ANSWER, "tool_calls": None, "finish_reason": "stop"}]


def test_buffer_mode_refuses_a_blocked_stream_before_the_first_byte(closed: RunningGateway) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        _ask(closed, "response:block", stream=True)  # a 403 JSON error, no stream at all
    assert info.value.code == "webhook_blocked" and "Customer data may not be sent." in info.value.message
    assert ANSWER not in info.value.response.text
    with pytest.raises(anthropic.PermissionDeniedError) as claude:
        _claude_stream(closed, "response:block", [])
    assert claude.value.status_code == 403 and "webhook_blocked" in claude.value.response.text
    got: list[str] = []
    _streamed(closed, "response:modify", got)
    assert "".join(got) == "The answer, as approved."


def test_post_mode_ends_a_blocked_stream_with_an_error_event(post_closed: RunningGateway) -> None:
    got: list[str] = []
    with pytest.raises(openai.APIError, match="Customer data may not be sent"):
        _streamed(post_closed, "response:block", got)
    assert "".join(got) == ANSWER  # sent as it came; the finish chunk and [DONE] never came
    claude: list[str] = []
    with pytest.raises(anthropic.APIError, match="Customer data may not be sent"):
        _claude_stream(post_closed, "response:block", claude)
    assert "".join(claude) == ANSWER
    kept: list[str] = []
    _streamed(post_closed, "response:modify", kept)  # too late to change: recorded, not applied
    assert "".join(kept) == ANSWER


@pytest.mark.parametrize("mode", ["buffer", "post"])
def test_stream_reviews_fail_closed_and_open_on_timeout(
    closed: RunningGateway,
    open_: RunningGateway,
    post_closed: RunningGateway,
    post_open: RunningGateway,
    mode: str,
) -> None:
    shut, free = (closed, open_) if mode == "buffer" else (post_closed, post_open)
    if mode == "buffer":
        with pytest.raises(openai.InternalServerError) as info:
            _ask(shut, "response:slow", stream=True)
        assert info.value.status_code == 503 and info.value.code == "guardrail_unavailable"
    else:
        with pytest.raises(openai.APIError, match="guardrail_unavailable"):
            _streamed(shut, "response:slow", [])
    got: list[str] = []
    _streamed(free, "response:slow", got)
    assert "".join(got) == ANSWER


def test_a_stream_the_service_modified_or_refused_is_never_cached(
    closed: RunningGateway, fake_openai: FakeServer
) -> None:
    client = openai.OpenAI(base_url=closed.openai_base, api_key=closed.master_key, max_retries=0)
    for policy in ("allow", "response:modify", "response:block"):
        messages: Any = [{"role": "user", "content": f"cache me? {policy}"}]
        for attempt in range(2):
            before = len(fake_openai.requests)
            try:
                list(
                    client.chat.completions.create(
                        model=MODEL,
                        messages=messages,
                        temperature=0,
                        stream=True,
                        extra_body={"metadata": {"policy": policy}},
                    )
                )
            except openai.PermissionDeniedError:
                assert policy == "response:block"
            # Asked every time, but for the allowed answer's second request, served from the cache.
            assert len(fake_openai.requests) == before + (0 if policy == "allow" and attempt else 1)


@pytest.mark.parametrize("mode", ["buffer", "post"])
def test_anthropic_clients_of_an_anthropic_provider_are_reviewed_too(
    fake_openai: FakeServer, policy_service: FakeServer, mode: str
) -> None:
    """Anthropic to Anthropic is normally relayed as the provider's bytes; a response-stage webhook reads it."""
    with serve(anthropic_server.make_app()) as fake:
        env = {**_env(fake_openai), "ANTHROPIC_API_KEY": "sk-ant-upstream", "ANTHROPIC_BASE_URL": fake.base_url}
        with run_gateway(_config(policy_service, "closed", mode), env) as gw:
            claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)

            def stream(policy: str, got: list[str]) -> None:
                with claude.messages.stream(
                    model="anthropic/claude-haiku-4-5",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "hello"}],
                    extra_body={"metadata": {"policy": policy}},
                ) as events:
                    got.extend(events.text_stream)

            got: list[str] = []
            stream("allow", got)
            assert "".join(got) == anthropic_server.ANSWER
            if mode == "buffer":
                with pytest.raises(anthropic.PermissionDeniedError, match="webhook_blocked"):
                    stream("response:block", [])
            else:
                sent: list[str] = []
                with pytest.raises(anthropic.APIError, match="webhook_blocked"):
                    stream("response:block", sent)
                assert "".join(sent) == anthropic_server.ANSWER


def test_a_buffered_stream_gets_the_output_filter_verdict_as_a_plain_response(
    fake_openai: FakeServer, policy_service: FakeServer
) -> None:
    """Held whole for the webhook, a stream's output-filter block is a 403 and its flag is in the headers."""
    for action in ("block", "flag"):
        config = _config(policy_service, "closed") + (
            f"  output_filter:\n    enabled: true\n    categories:\n      vendor: {{words: [fake], action: {action}}}\n"
        )
        with run_gateway(config, _env(fake_openai)) as gw:
            client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
            messages: Any = [{"role": "user", "content": "hello"}]
            if action == "block":
                with pytest.raises(openai.PermissionDeniedError) as info:
                    client.chat.completions.create(model=MODEL, messages=messages, stream=True)
                assert info.value.code == "output_blocked"
                continue
            raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, stream=True)
            assert raw.headers["x-tollgate-guardrail"] == "flagged"
            assert raw.headers["x-tollgate-guardrail-rules"] == "vendor"
            assert "".join(c.delta.content or "" for chunk in raw.parse() for c in chunk.choices) == ANSWER
