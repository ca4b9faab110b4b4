"""JSON-schema output validation through the real gateway, with the official openai SDK as the client.

The provider is a fake speaking OpenAI's wire format whose answer is chosen by the model name."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway

ANSWERS = {"valid": '{"name": "Ada", "age": 36}', "invalid": '{"name": "Ada", "age": "thirty-six"}'}
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
RESPONSE_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}


CALLS = {"flaky": 0}


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body["model"] == "flaky":  # wrong every other time
        CALLS["flaky"] += 1
        text = ANSWERS["invalid" if CALLS["flaky"] % 2 else "valid"]
    else:
        text = ANSWERS[body["model"]]
    base = {"id": "chatcmpl-json", "created": 1, "model": body["model"]}
    if not body.get("stream"):
        message = {"role": "assistant", "content": text}
        usage = {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}
        out = {**base, "object": "chat.completion", "usage": usage,
               "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
        return web.json_response(out)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
    deltas = [({"role": "assistant", "content": ""}, None), *(({"content": p}, None) for p in pieces), ({}, "stop")]
    for delta, finish in deltas:
        chunk = {**base, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


@pytest.fixture(scope="module")
def json_provider() -> Iterator[FakeServer]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    with serve(app) as server:
        yield server


@pytest.fixture(scope="module")
def validating(json_provider: FakeServer) -> Iterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": json_provider.base_url + "/v1"}
    with run_gateway("guardrails:\n  output_schema: {enabled: true}\n", env) as gw:
        yield gw


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)


def _messages() -> Any:
    return [{"role": "user", "content": f"Who wrote the first program? [{uuid.uuid4().hex}]"}]


def test_valid_answers_pass_streamed_and_not(validating: RunningGateway) -> None:
    answer = client(validating).chat.completions.create(
        model="openai/valid", messages=_messages(), response_format=RESPONSE_FORMAT
    )
    assert orjson.loads(answer.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    stream = client(validating).chat.completions.create(
        model="openai/valid", messages=_messages(), response_format=RESPONSE_FORMAT, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert orjson.loads(text) == {"name": "Ada", "age": 36}


def test_an_invalid_answer_is_a_502_naming_the_problem(validating: RunningGateway, json_provider: FakeServer) -> None:
    before = len(json_provider.requests)
    with pytest.raises(openai.InternalServerError) as info:
        client(validating).chat.completions.create(
            model="openai/invalid", messages=_messages(), response_format=RESPONSE_FORMAT
        )
    err = info.value
    assert err.status_code == 502 and err.code == "output_schema_invalid"
    assert "at $.age" in err.message and "'type'" in err.message
    assert "thirty-six" not in err.response.text
    assert len(json_provider.requests) == before + 2  # asked once more (retries: 1), wrong again


def test_a_wrong_answer_is_asked_for_again_and_both_calls_are_charged(validating: RunningGateway) -> None:
    CALLS["flaky"] = 0
    answer = client(validating).chat.completions.create(
        model="openai/flaky", messages=_messages(), response_format=RESPONSE_FORMAT
    )
    assert orjson.loads(answer.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    assert CALLS["flaky"] == 2
    assert answer.usage is not None and answer.usage.prompt_tokens == 10  # the answer's own usage
    assert _output_tokens(validating) == 16.0  # the request is charged for both calls (8 + 8)


def _output_tokens(gw: RunningGateway) -> float:
    """The gateway's output-token counter for the flaky model (FINALIZE runs just after the answer is sent)."""
    pattern = re.compile(r'^tollgate_tokens_total\{model="openai/flaky",[^}]*type="output"\} (\S+)$')
    value = 0.0
    for _ in range(50):
        with urllib.request.urlopen(gw.base_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        value = sum(float(m.group(1)) for line in text.splitlines() if (m := pattern.match(line)))
        if value:
            break
        time.sleep(0.05)
    return value


def test_without_retries_the_first_wrong_answer_is_the_error(json_provider: FakeServer) -> None:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": json_provider.base_url + "/v1"}
    with run_gateway("guardrails:\n  output_schema: {enabled: true, retries: 0}\n", env) as gw:
        CALLS["flaky"] = 0
        with pytest.raises(openai.InternalServerError):
            client(gw).chat.completions.create(
                model="openai/flaky", messages=_messages(), response_format=RESPONSE_FORMAT
            )
        assert CALLS["flaky"] == 1


def test_an_invalid_stream_ends_with_a_terminal_error_event(validating: RunningGateway) -> None:
    stream = client(validating).chat.completions.create(
        model="openai/invalid", messages=_messages(), response_format=RESPONSE_FORMAT, stream=True
    )
    seen: list[str] = []

    def read() -> None:
        for chunk in stream:
            seen.extend(c.finish_reason or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as info:
        read()
    assert "at $.age" in info.value.message
    assert "stop" not in seen  # the finish chunk is replaced by the error event


def test_without_a_schema_nothing_is_validated(validating: RunningGateway) -> None:
    answer = client(validating).chat.completions.create(model="openai/invalid", messages=_messages())
    assert answer.choices[0].message.content == ANSWERS["invalid"]
