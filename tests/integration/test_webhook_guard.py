"""The webhook guardrail through the real gateway: a fake policy service on loopback, the openai SDK as client.

The fake service decides from the request's metadata ``{"policy": ...}`` (which the gateway passes on), and
records every payload it got with its signature header."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from aiohttp import web

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


def _config(service: FakeServer, failure: str) -> str:
    return (
        "guardrails:\n  webhook:\n    enabled: true\n    on_response: true\n"
        f"    url: {service.base_url}/decide\n    timeout_seconds: 0.5\n    failure: {failure}\n"
        "    secret: ${WEBHOOK_SECRET}\n"
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


def test_streams_are_checked_before_the_model_only(closed: RunningGateway) -> None:
    chunks = list(_ask(closed, "response:block", stream=True))  # the answer stage does not apply to streams
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake OpenAI."
    with pytest.raises(openai.PermissionDeniedError):
        _ask(closed, "block", stream=True)


@pytest.mark.parametrize("failure", ["slow", "broken", "garbage"])
def test_fail_closed_and_fail_open(closed: RunningGateway, open_: RunningGateway, failure: str) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        _ask(closed, failure)
    assert info.value.status_code == 503 and info.value.code == "guardrail_unavailable"
    assert _ask(open_, failure).choices[0].message.content == "Hello from the fake OpenAI."
