"""Fallback on a deployment's context-window or content-policy refusal, where the model asks for it.

Those refusals are 4xx errors about the request, so by default they go straight back to the client; a
logical model with ``fallback_on`` moves on to its next deployment instead (a larger context window, another
provider's filter), translating the request for that deployment's wire format.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes import anthropic_server, openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tollgate.providers.base import classify_http_error

CONFIG = """
providers:
  small:
    type: openai
    api_key: sk-small
    base_url: ${OPENAI_FAKE}/v1
  claude:
    type: anthropic
    api_key: sk-ant-large
    base_url: ${ANTHROPIC_FAKE}
models:
  long-context:
    fallback_on: [context_window, content_policy]
    deployments:
      - provider: small
        model: scenario-context_length
      - provider: claude
        model: claude-sonnet-4-5
  filtered:
    fallback_on: [content_policy]
    deployments:
      - provider: small
        model: scenario-content_filter
      - provider: claude
        model: claude-sonnet-4-5
  strict:
    deployments:
      - provider: small
        model: scenario-context_length
      - provider: claude
        model: claude-sonnet-4-5
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeServer, FakeServer]]:
    with serve(openai_server.make_app()) as oa, serve(anthropic_server.make_app()) as an:
        yield oa, an


@pytest.fixture(scope="module")
def gw(fakes: tuple[FakeServer, FakeServer]) -> Iterator[RunningGateway]:
    oa, an = fakes
    with run_gateway(CONFIG, {"OPENAI_FAKE": oa.base_url, "ANTHROPIC_FAKE": an.base_url}) as running:
        yield running


def _calls(fake: FakeServer, path: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(path))


def test_a_context_window_refusal_moves_to_the_larger_deployment(
    gw: RunningGateway, fakes: tuple[FakeServer, FakeServer]
) -> None:
    _, an = fakes
    before = _calls(an, "/v1/messages")
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="long-context", messages=[{"role": "user", "content": "a very long document ..."}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content  # answered by the Anthropic deployment, translated back
    assert raw.headers["x-tollgate-provider"] == "claude"
    assert raw.headers["x-tollgate-fallback"] == "true" and raw.headers["x-tollgate-attempts"] == "2"
    assert _calls(an, "/v1/messages") == before + 1

    # Streamed, and through the Anthropic front door too.
    stream = client.chat.completions.create(
        model="long-context", messages=[{"role": "user", "content": "again"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    ant = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    message = ant.messages.create(model="long-context", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert message.content and message.content[0].type == "text"


def test_a_content_policy_refusal_moves_on_only_where_asked(gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="filtered", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-tollgate-provider"] == "claude"


def test_without_fallback_on_the_refusal_is_the_clients(
    gw: RunningGateway, fakes: tuple[FakeServer, FakeServer]
) -> None:
    _, an = fakes
    before = _calls(an, "/v1/messages")
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="strict", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length" in str(info.value.message)
    assert _calls(an, "/v1/messages") == before  # the next deployment was not tried


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            b'{"error": {"message": "This model\'s maximum context length is 8192 tokens. However, your messages '
            b'resulted in 9000 tokens.", "type": "invalid_request_error", "param": "messages", '
            b'"code": "context_length_exceeded"}}',
            "context_length_exceeded",
        ),
        (
            400,
            b'{"type": "error", "error": {"type": "invalid_request_error", '
            b'"message": "prompt is too long: 210345 tokens > 200000 maximum"}}',
            "context_length_exceeded",
        ),
        (
            400,
            b'{"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI\'s content '
            b'management policy.", "type": null, "param": "prompt", "code": "content_filter", "status": 400}}',
            "content_policy_violation",
        ),
        (
            400,
            b'{"error": {"message": "Your request was rejected as a result of our safety system.", '
            b'"type": "invalid_request_error", "code": "content_policy_violation"}}',
            "content_policy_violation",
        ),
        (400, b'{"error": {"message": "Invalid value for \'temperature\'", "type": "invalid_request_error"}}', None),
    ],
)
def test_refusals_are_recognised_in_each_providers_error_shape(status: int, body: bytes, code: str | None) -> None:
    assert classify_http_error("p", status, {}, body).code == code
