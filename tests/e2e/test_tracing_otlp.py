"""A real `tollgate serve` exports its traces over OTLP/HTTP, configured by the standard OTEL_* variables only.

The collector is a small aiohttp server speaking the OTLP/HTTP protobuf protocol (POST /v1/traces); what it
receives is decoded with the OpenTelemetry protobuf definitions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fakes.harness import FakeServer, free_port, serve

pytestmark = pytest.mark.slow

CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_", "OTEL_"))
}
MASTER = "tg-master-otlp-test"


def _names(received: list[ExportTraceServiceRequest]) -> set[str]:
    return {
        span.name
        for message in list(received)
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }


def collector_app(received: list[ExportTraceServiceRequest]) -> web.Application:
    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    return app


@pytest.fixture
def collector() -> Iterator[tuple[FakeServer, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    with serve(collector_app(received)) as server:
        yield server, received


def test_spans_reach_the_collector_named_after_the_service(
    collector: tuple[FakeServer, list[ExportTraceServiceRequest]], tmp_path: object
) -> None:
    server, received = collector
    port = free_port()
    env = {
        **CLEAN_ENV,
        "TOLLGATE_MASTER_KEY": MASTER,
        "TOLLGATE_DATA_DIR": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": server.base_url,
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        banner = ""
        deadline = time.monotonic() + 30
        while "Try:" not in banner and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            banner += line
        assert "Try:" in banner, banner
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=MASTER, max_retries=0)
        client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "hi"}])
        deadline = time.monotonic() + 10
        while not {"POST /v1/chat/completions", "chat tollgate-demo"} <= _names(received):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(15)
    assert received, "no OTLP export arrived"
    spans = []
    for message in received:
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "gateway-under-test"
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "tollgate"
                spans.extend(scope_spans.spans)
    names = {span.name for span in spans}
    assert {"POST /v1/chat/completions", "chat tollgate-demo"} <= names
    call = next(span for span in spans if span.name == "chat tollgate-demo")
    attrs = {a.key: a.value for a in call.attributes}
    assert attrs["gen_ai.provider.name"].string_value == "tollgate.demo"
    assert attrs["gen_ai.usage.output_tokens"].int_value > 0
