"""OpenTelemetry traces through a real gateway: spans, GenAI attributes, W3C trace context in and out.

The spans go to the SDK's in-memory exporter (the thing under test is what the gateway records, not the
exporter); tests/e2e/test_tracing_otlp.py checks the OTLP export of a real `tollgate serve`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tollgate.observability.tracing import Tracing, wanted

CONFIG = """
providers:
  up:
    type: openai
    api_key: sk-upstream
    base_url: ${FAKE}/v1
  down:
    type: openai
    api_key: sk-upstream
    base_url: ${FAKE}/v1
models:
  resilient:
    deployments:
      - provider: down
        model: scenario-500
      - provider: up
        model: gpt-4o-mini
routing:
  retries:
    max_retries: 0
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


@pytest.fixture
def traced(fake: FakeServer) -> Iterator[tuple[RunningGateway, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with run_gateway(CONFIG, {"FAKE": fake.base_url}) as gw:
        gw.app.gateway.tracing = Tracing(provider=provider)
        yield gw, exporter


def roots(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The finished server spans, once there are ``count``: a request's span ends after its response was
    sent (FINALIZE runs last), so the client can be a moment ahead of it."""
    deadline = time.monotonic() + 5
    while True:
        found = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def spans_of(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


def test_a_request_continues_the_callers_trace_and_carries_it_upstream(
    traced: tuple[RunningGateway, InMemorySpanExporter], fake: FakeServer
) -> None:
    gw, exporter = traced
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    client.chat.completions.create(
        model="up/gpt-4o-mini",
        messages=[{"role": "user", "content": "secret prompt text"}],
        max_tokens=20,
        extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    roots(exporter, 1)
    spans = spans_of(exporter, int(CALLER_TRACE, 16))
    by_name = {s.name: s for s in spans}
    server = by_name["POST /v1/chat/completions"]
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None and server.parent.span_id == int(CALLER_SPAN, 16)
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.request.model"] == "up/gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["tollgate.cost_usd"] > 0

    call = by_name["chat gpt-4o-mini"]
    assert call.kind == SpanKind.CLIENT
    assert call.parent is not None and call.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    call_attrs = dict(call.attributes or {})
    assert call_attrs["gen_ai.operation.name"] == "chat"
    assert call_attrs["gen_ai.provider.name"] == "openai"
    assert call_attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert call_attrs["gen_ai.request.max_tokens"] == 20
    assert call_attrs["server.address"] == "127.0.0.1"
    assert call_attrs["gen_ai.usage.output_tokens"] == attrs["gen_ai.usage.output_tokens"]
    # The phases are spans of their own.
    assert {"admit ModelAccessPolicy", "admit ReservationPolicy"} <= set(by_name)
    # The provider got the call span's context as W3C traceparent.
    sent = fake.last.headers["traceparent"]
    assert sent == f"00-{CALLER_TRACE}-{call.context.span_id:016x}-01"  # type: ignore[union-attr]
    # Prompts and answers never go on spans.
    for span in spans:
        assert not any("secret prompt" in str(v) for v in (span.attributes or {}).values())


def test_a_fallback_shows_one_span_per_attempt_and_a_stream_span_covers_the_stream(
    traced: tuple[RunningGateway, InMemorySpanExporter],
) -> None:
    gw, exporter = traced
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    stream = client.chat.completions.create(
        model="resilient",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = next(chunk.usage for chunk in chunks if chunk.usage is not None)
    root = roots(exporter, 1)[-1]
    assert root.context is not None
    spans = spans_of(exporter, root.context.trace_id)
    attempts = sorted((s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert [s.name for s in attempts] == ["chat scenario-500", "chat gpt-4o-mini"]
    failed, served = attempts
    assert dict(failed.attributes or {})["error.type"] and not failed.status.is_ok
    served_attrs = dict(served.attributes or {})
    assert served_attrs["tollgate.attempt"] == 2
    assert served_attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    # The streamed call's span ends with the stream, not at its first chunk.
    assert served.end_time is not None and root.end_time is not None
    assert served.end_time <= root.end_time


def test_refusals_and_untraced_requests(traced: tuple[RunningGateway, InMemorySpanExporter], fake: FakeServer) -> None:
    gw, exporter = traced
    bad = requests.post(
        gw.openai_base + "/chat/completions",
        json={"model": "up/gpt-4o-mini", "messages": []},
        headers=gw.auth(),
        timeout=5,
    )
    assert bad.status_code == 400
    root = roots(exporter, 1)[-1]
    assert dict(root.attributes or {})["error.type"] == "invalid_request_error"
    health_spans = len(exporter.get_finished_spans())
    requests.get(gw.base_url + "/health", timeout=5)
    assert len(exporter.get_finished_spans()) == health_spans  # probes are not traced

    gw.app.gateway.tracing = None
    before = len(fake.requests)
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    client.chat.completions.create(model="up/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert len(fake.requests) == before + 1 and "traceparent" not in fake.last.headers


def test_auto_turns_tracing_on_with_an_otlp_endpoint() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert wanted("auto", endpoint) and not wanted("auto", {})
    assert not wanted("auto", {**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not wanted("auto", {**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert wanted(True, {}) and not wanted(False, endpoint)
