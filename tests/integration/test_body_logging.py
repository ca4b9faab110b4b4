"""server.log_bodies: the access log line carries the bodies as the provider saw them, after PII masking."""

from __future__ import annotations

import logging

import anthropic
import openai
import orjson
import pytest
import requests

from tests.gateway import run_gateway

EMAIL = "jane.doe@example.com"
CHAT = {"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": f"Write to {EMAIL} please"}]}


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "tollgate.access"]


def test_bodies_are_logged_masked_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    config = (
        "server: {log_bodies: true, log_body_max_bytes: 300}\nguardrails:\n  pii: {enabled: true, reversible: true}\n"
    )
    with caplog.at_level(logging.INFO, logger="tollgate.access"), run_gateway(config, {}) as gw:
        answer = requests.post(gw.openai_base + "/chat/completions", json=CHAT, headers=gw.auth(), timeout=10)
        assert answer.status_code == 200
        long = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
        assert requests.post(gw.openai_base + "/chat/completions", json=long, headers=gw.auth(), timeout=10).ok
    first, second = [line for line in _access_lines(caplog) if line["endpoint"] == "chat"][:2]
    request_body = str(first["request_body"])
    assert "<EMAIL_1>" in request_body and EMAIL not in request_body  # what the provider saw
    assert EMAIL not in orjson.dumps(first).decode()  # nowhere in the line, answer included
    assert '"chat.completion"' in str(first["response_body"])
    assert "cost_usd" in first and "team_id" in first and "org_id" in first
    assert str(second["request_body"]).endswith("...(truncated)") and len(str(second["request_body"])) < 330


def test_bodies_are_not_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tollgate.access"), run_gateway("", {}) as gw:
        assert requests.post(gw.openai_base + "/chat/completions", json=CHAT, headers=gw.auth(), timeout=10).ok
    (line,) = [line for line in _access_lines(caplog) if line["endpoint"] == "chat"]
    assert "request_body" not in line and "response_body" not in line
    assert EMAIL not in orjson.dumps(line).decode()


def test_streamed_answers_are_logged_as_the_provider_wrote_them(caplog: pytest.LogCaptureFixture) -> None:
    config = (
        "server: {log_bodies: true, log_body_max_bytes: 300}\nguardrails:\n  pii: {enabled: true, reversible: true}\n"
    )
    with caplog.at_level(logging.INFO, logger="tollgate.access"), run_gateway(config, {}) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        chunks = list(client.chat.completions.create(**CHAT, stream=True))  # type: ignore[call-overload]
        shown = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert EMAIL in shown  # the caller gets its value back (reversible mode) ...
        claude = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
        with claude.messages.stream(model="demo/tollgate-demo", max_tokens=300, messages=CHAT["messages"]) as s:  # type: ignore[arg-type]
            assert EMAIL in s.get_final_text()
        long = {**CHAT, "messages": [{"role": "user", "content": "y" * 2000}], "stream": True}
        assert requests.post(gw.openai_base + "/chat/completions", json=long, headers=gw.auth(), timeout=10).ok
    lines = [line for line in _access_lines(caplog) if line["endpoint"] in ("chat", "messages")]
    assert len(lines) == 3
    for line in lines[:2]:
        logged = orjson.loads(str(line["response_body"]))
        assert logged["object"] == "chat.completion.stream"
        (choice,) = logged["choices"]
        # ... while the log holds what the provider wrote: the placeholder, never the value.
        assert "<EMAIL_1>" in choice["content"] and choice["finish_reason"] in ("stop", "length")
        assert EMAIL not in orjson.dumps(line).decode()
    # A long answer is cut like any logged body (the recorder itself keeps no more than the limit).
    cut = str(lines[2]["response_body"])
    assert cut.startswith('{"object":"chat.completion.stream"') and cut.endswith("...(truncated)") and len(cut) < 330
