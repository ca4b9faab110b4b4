"""Langfuse export through a real gateway (official openai SDK as the client) to a fake Langfuse ingestion
server on loopback that speaks the real API (basic auth, 207 multi-status)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import openai
import pytest
import requests

from tests.fakes.langfuse_server import PUBLIC_KEY, SECRET_KEY, LangfuseState, serve_langfuse
from tests.gateway import RunningGateway, run_gateway

DEMO = "demo/tollgate-demo"
ENV = {"LF_PUBLIC": PUBLIC_KEY, "LF_SECRET": SECRET_KEY}


def _config(host: str, extra: str = "", flush: float = 0.05) -> str:
    return (
        f"langfuse:\n  enabled: true\n  host: {host}\n  public_key: ${{LF_PUBLIC}}\n  secret_key: ${{LF_SECRET}}\n"
        f"  flush_interval_seconds: {flush}\n{extra}"
    )


def _wait(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the export"
        time.sleep(0.02)


def _team_key(gw: RunningGateway) -> tuple[str, dict[str, str]]:
    s = uuid.uuid4().hex[:8]
    ids = {"org": f"org-{s}", "team": f"team-{s}", "user": f"user-{s}"}
    for path, body in (
        ("/admin/orgs", {"id": ids["org"], "name": "Org"}),
        ("/admin/teams", {"id": ids["team"], "org_id": ids["org"], "name": "Team"}),
        ("/admin/users", {"id": ids["user"], "team_id": ids["team"]}),
        ("/admin/keys", {"user_id": ids["user"], "name": "app"}),
    ):
        r = requests.post(gw.base_url + path, json=body, headers=gw.auth(), timeout=10)
        assert r.status_code == 201, r.text
    return r.json()["key"], {**ids, "key": r.json()["id"]}


def _by_id(state: LangfuseState, kind: str) -> dict[str, dict[str, Any]]:
    return {body["id"]: body for body in state.of_type(kind)}


def test_generations_are_exported_with_usage_cost_and_tenant_but_no_content() -> None:
    with serve_langfuse() as (lf, state), run_gateway(_config(lf.base_url), ENV) as gw:
        key, ids = _team_key(gw)
        client = openai.OpenAI(api_key=key, base_url=gw.openai_base, max_retries=0)
        secret_prompt = "my account number is 4242"
        raw = client.chat.completions.with_raw_response.create(
            model=DEMO, messages=[{"role": "user", "content": secret_prompt}]
        )
        answer = raw.parse()
        request_id = raw.headers["x-request-id"]
        stream = client.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        failed_id = missing.value.response.headers["x-request-id"]
        _wait(lambda: len(state.of_type("generation-create")) >= 3)
        gens = _by_id(state, "generation-create")
        traces = _by_id(state, "trace-create")

    assert len(gens) == 3 and len(traces) == 3  # admin calls are not generations
    gen = gens[request_id]
    assert gen["model"] == "tollgate-demo" and gen["name"] == "chat" and gen["level"] == "DEFAULT"
    assert answer.usage is not None
    assert gen["usageDetails"] == {
        "input": answer.usage.prompt_tokens,
        "output": answer.usage.completion_tokens,
        "total": answer.usage.total_tokens,
    }
    assert isinstance(gen["costDetails"]["total"], float)
    assert gen["startTime"] <= gen["endTime"] and gen["startTime"].endswith("Z")
    meta = gen["metadata"]
    assert meta["provider"] == "demo" and meta["status"] == 200 and meta["request_id"] == request_id
    assert (meta["team_id"], meta["org_id"], meta["user_id"], meta["key_id"]) == (
        ids["team"],
        ids["org"],
        ids["user"],
        ids["key"],
    )
    trace = traces[gen["traceId"]]
    assert trace["userId"] == ids["user"] and f"team:{ids['team']}" in trace["tags"]
    # No content by default: neither the prompt nor the answer leaves the gateway.
    for body in (*gens.values(), *traces.values()):
        assert "input" not in body and "output" not in body
    assert secret_prompt not in str(state.events) and (answer.choices[0].message.content or "") not in str(state.events)
    # The stream: first-byte time recorded, usage from the final chunk.
    streamed = next(g for g in gens.values() if g["metadata"]["stream"])
    assert "completionStartTime" in streamed
    usage_chunk = next(c for c in chunks if c.usage is not None)
    assert streamed["usageDetails"]["output"] == usage_chunk.usage.completion_tokens
    # A failed call is a generation too, at level ERROR with its status.
    bad = gens[failed_id]
    assert bad["level"] == "ERROR" and bad["metadata"]["status"] == 404 and "404" in bad["statusMessage"]
    # Every request carried the project's keys as basic auth (checked by the fake: nothing was refused).
    assert set(state.answered) == {207}


def test_captured_content_is_what_the_provider_saw_after_pii_masking() -> None:
    extra = "  capture_content: true\nguardrails:\n  pii: {enabled: true, reversible: true}\n"
    with serve_langfuse() as (lf, state), run_gateway(_config(lf.base_url, extra), ENV) as gw:
        client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
        email = "jane.doe@example.com"
        answer = client.chat.completions.create(
            model=DEMO, messages=[{"role": "user", "content": f"mail {email} today"}]
        )
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model=DEMO, messages=[{"role": "user", "content": f"stream to {email}"}], stream=True
            )
            if c.choices
        )
        _wait(lambda: len(state.of_type("generation-create")) >= 2)
    # The caller gets the original value back (reversible masking)...
    assert email in (answer.choices[0].message.content or "") and email in streamed
    # ...Langfuse gets what the provider saw and wrote: placeholders, never the address.
    assert email not in str(state.events)
    gens = state.of_type("generation-create")
    for gen in gens:
        assert "<EMAIL_1>" in str(gen["input"]) and "<EMAIL_1>" in gen["output"], gen
    assert {g["input"][0]["content"] for g in gens} == {"mail <EMAIL_1> today", "stream to <EMAIL_1>"}


@pytest.mark.slow
def test_failed_batches_are_retried_and_the_queue_is_flushed_at_shutdown() -> None:
    state = LangfuseState(fail_next=2)  # two 503s, then the batch goes through
    with serve_langfuse(state) as (lf, _):
        # A long flush interval: nothing is sent before shutdown, which must send it all.
        with run_gateway(_config(lf.base_url, "  batch_size: 100\n", flush=60), ENV) as gw:
            client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
            for _ in range(3):
                client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
            exporter = next(s for s in gw.app.gateway.services if type(s).__name__ == "LangfuseExporter")
            # FINALIZE (which queues the generation) runs just after the answer went out: wait for the third.
            _wait(lambda: exporter.queued == 3)
            assert state.answered == []
        assert state.answered == [503, 503, 207]
        assert len(state.of_type("generation-create")) == 3
        assert (exporter.exported, exporter.dropped, exporter.rejected) == (6, 0, 0)


def test_refused_events_and_wrong_keys_are_counted_not_retried() -> None:
    state = LangfuseState(reject_types={"trace-create"})
    with serve_langfuse(state) as (lf, _):
        with run_gateway(_config(lf.base_url), ENV) as gw:
            client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
            client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
            exporter = next(s for s in gw.app.gateway.services if type(s).__name__ == "LangfuseExporter")
            _wait(lambda: exporter.exported + exporter.rejected == 2)
        assert (exporter.exported, exporter.rejected) == (1, 1)  # the 207 body's errors, per event
        state.reject_types.clear()
        wrong = {**ENV, "LF_SECRET": "sk-lf-wrong"}
        with run_gateway(_config(lf.base_url), wrong) as gw:
            client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
            client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
            exporter = next(s for s in gw.app.gateway.services if type(s).__name__ == "LangfuseExporter")
            _wait(lambda: exporter.rejected == 2)
        assert state.answered.count(401) == 1  # refused once, not retried
        assert exporter.exported == 0


def _metric(gw: RunningGateway, sample: str) -> float:
    text = requests.get(gw.base_url + "/metrics", timeout=10).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample + " ")]
    assert values, f"{sample} is not on /metrics"
    return values[0]


def test_drops_failures_and_rejections_are_on_the_metrics_endpoint() -> None:
    state = LangfuseState(fail_next=1)  # one 503 and no retry: the batch is lost
    with serve_langfuse(state) as (lf, _), run_gateway(_config(lf.base_url, "  max_retries: 0\n"), ENV) as gw:
        client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
        client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "lost"}])
        exporter = next(s for s in gw.app.gateway.services if type(s).__name__ == "LangfuseExporter")
        _wait(lambda: exporter.failed_batches == 1)
        assert _metric(gw, "tollgate_langfuse_batch_failures_total") == 1
        assert _metric(gw, "tollgate_langfuse_generations_dropped_total") == 1
        # Langfuse is back, and refuses the trace events of the next call (207): one exported, one rejected.
        state.reject_types.add("trace-create")
        client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "half"}])
        _wait(lambda: exporter.exported + exporter.rejected == 2)
        assert _metric(gw, 'tollgate_langfuse_events_total{outcome="exported"}') == 1
        assert _metric(gw, 'tollgate_langfuse_events_total{outcome="rejected"}') == 1
        assert _metric(gw, "tollgate_langfuse_batch_failures_total") == 1  # a 207 is no failed batch
        assert state.answered == [503, 207]


@pytest.mark.slow
def test_a_full_queue_drops_and_counts_instead_of_blocking_requests() -> None:
    state = LangfuseState(delay=1.0)  # a slow Langfuse: the first batch is held while requests keep coming
    extra = "  batch_size: 1\n  max_queue: 2\n"
    with serve_langfuse(state) as (lf, _), run_gateway(_config(lf.base_url, extra, flush=0.01), ENV) as gw:
        client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
        started = time.monotonic()
        for _ in range(8):
            client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
        took = time.monotonic() - started
        exporter = next(s for s in gw.app.gateway.services if type(s).__name__ == "LangfuseExporter")
        # One in flight, two queued, the rest dropped and counted; the last call's FINALIZE (which queues its
        # generation) runs just after its answer was sent, so wait for it rather than read at once.
        _wait(lambda: exporter.dropped >= 8 - 1 - 2)
    # Eight calls finished while one batch was held for a second: the requests never waited for Langfuse
    # (a functional bound, not a benchmark: had they waited, this would take eight seconds).
    assert took < 4.0
    assert exporter.exported + 2 * exporter.dropped == 16  # every generation either sent or counted as dropped


def test_with_tracing_on_the_langfuse_trace_is_the_opentelemetry_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tollgate.observability.tracing import Tracing

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with serve_langfuse() as (lf, state), run_gateway(_config(lf.base_url), ENV) as gw:
        gw.app.gateway.tracing = Tracing(provider=provider)
        client = openai.OpenAI(api_key=gw.master_key, base_url=gw.openai_base, max_retries=0)
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        client.chat.completions.create(
            model=DEMO,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"},
        )
        _wait(lambda: len(state.of_type("generation-create")) == 1)
    (gen,) = state.of_type("generation-create")
    (trace,) = state.of_type("trace-create")
    assert gen["traceId"] == trace["id"] == caller_trace  # the caller's trace, continued by the gateway
    server = [s for s in spans.get_finished_spans() if s.name.startswith("POST ")]
    assert f"{server[0].context.trace_id:032x}" == caller_trace
