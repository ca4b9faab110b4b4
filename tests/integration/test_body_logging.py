"""server.log_bodies: the access log line carries the bodies as the provider saw them, after PII masking."""

from __future__ import annotations

import logging

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
