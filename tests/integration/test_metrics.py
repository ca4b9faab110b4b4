"""GET /metrics on a real gateway: real requests in, the Prometheus text parsed back, counts and labels checked."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

CHAT = "/v1/chat/completions"
# A logical model whose first deployment always fails with a retryable 500: every call falls back.
CONFIG = """
models:
  resilient:
    deployments:
      - provider: openai
        model: scenario-500
      - provider: openai
        model: gpt-4o-mini
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-upstream-secret", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway(CONFIG, env) as running:
        yield running


async def scrape(gw: RunningGateway, headers: dict[str, str] | None = None) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(gw.base_url + "/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def chat(gw: RunningGateway, model: str, key: str | None = None, **extra: object) -> tuple[int, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.base_url + CHAT, json=body, headers=gw.auth(key)) as resp,
    ):
        return resp.status, await resp.read()


async def until(check: Callable[[Samples], bool], gw: RunningGateway, seconds: float = 5.0) -> Samples:
    """Scrape until ``check(samples)`` holds (FINALIZE runs after the client got its answer)."""
    deadline = time.monotonic() + seconds
    while True:
        samples = await scrape(gw)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.02)


async def test_requests_tokens_cost_and_latency(gw: RunningGateway) -> None:
    before = await scrape(gw)
    for _ in range(3):
        assert (await chat(gw, "gpt-4o-mini"))[0] == 200
    req = {"endpoint": "chat", "model": "gpt-4o-mini", "provider": "openai"}
    ok = {**req, "status_class": "2xx", "team": "", "org": ""}
    after = await until(
        lambda s: get(s, "tollgate_requests_total", **ok) >= get(before, "tollgate_requests_total", **ok) + 3, gw
    )

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("tollgate_requests_total", **ok) == 3
    tokens = {"model": "gpt-4o-mini", "provider": "openai", "team": "", "org": ""}
    assert delta("tollgate_tokens_total", type="input", **tokens) > 0
    assert delta("tollgate_tokens_total", type="output", **tokens) == 15  # the fake answers 5 tokens a call
    assert delta("tollgate_cost_usd_total", **tokens) > 0  # gpt-4o-mini is in the built-in price table
    hist = {**req, "stream": "false"}
    count = delta("tollgate_request_duration_seconds_count", **hist)
    assert count == 3
    assert delta("tollgate_request_duration_seconds_bucket", **hist, le="+Inf") == count
    buckets = sorted(
        (float(dict(ls)["le"]), v)
        for (n, ls), v in after.items()
        if n == "tollgate_request_duration_seconds_bucket" and set(hist.items()) <= ls
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert 0 < delta("tollgate_request_duration_seconds_sum", **hist) < 30
    assert get(after, "tollgate_requests_in_flight") == 0  # the scrape itself is not a request
    assert total(after, "tollgate_requests_total", endpoint="metrics") == 0
    config = [dict(ls) for (n, ls), v in after.items() if n == "tollgate_config_info" and v == 1]
    assert config == [{"config_version": gw.app.gateway.snapshot.version}]
    assert total(after, "tollgate_build_info") == 1


async def test_streams_record_time_to_first_byte(gw: RunningGateway) -> None:
    before = await scrape(gw)
    for model in ("gpt-4o-mini", "demo/tollgate-demo"):  # the OpenAI relay path and the demo provider
        status, raw = await chat(gw, model, stream=True)
        assert status == 200 and raw.rstrip().endswith(b"[DONE]")
    after = await until(
        lambda s: (
            total(s, "tollgate_time_to_first_byte_seconds_count")
            >= total(before, "tollgate_time_to_first_byte_seconds_count") + 2
        ),
        gw,
    )
    for model, provider in (("gpt-4o-mini", "openai"), ("demo/tollgate-demo", "demo")):
        labels = {"endpoint": "chat", "model": model, "provider": provider}
        ttfb = get(after, "tollgate_time_to_first_byte_seconds_sum", **labels) - get(
            before, "tollgate_time_to_first_byte_seconds_sum", **labels
        )
        whole = get(after, "tollgate_request_duration_seconds_sum", **labels, stream="true") - get(
            before, "tollgate_request_duration_seconds_sum", **labels, stream="true"
        )
        assert (
            get(after, "tollgate_time_to_first_byte_seconds_count", **labels)
            - get(before, "tollgate_time_to_first_byte_seconds_count", **labels)
            == 1
        )
        assert 0 < ttfb <= whole


async def test_fallbacks_retries_and_provider_errors(gw: RunningGateway) -> None:
    before = await scrape(gw)
    assert (await chat(gw, "resilient"))[0] == 200
    assert (await chat(gw, "openai/scenario-500"))[0] == 502
    failed = {"provider": "openai", "status": "502", "error_type": "upstream_error"}
    after = await until(
        lambda s: (
            get(s, "tollgate_provider_errors_total", **failed) > get(before, "tollgate_provider_errors_total", **failed)
        ),
        gw,
    )
    labels = {"endpoint": "chat", "model": "resilient", "provider": "openai", "team": "", "org": ""}
    assert get(after, "tollgate_fallbacks_total", **labels) - get(before, "tollgate_fallbacks_total", **labels) == 1
    assert get(after, "tollgate_retries_total", **labels) - get(before, "tollgate_retries_total", **labels) == 1
    assert (
        get(after, "tollgate_provider_errors_total", **failed) - get(before, "tollgate_provider_errors_total", **failed)
        == 1
    )
    err = {"endpoint": "chat", "provider": "openai", "team": "", "org": "", **failed}
    assert get(after, "tollgate_request_errors_total", **err) - get(before, "tollgate_request_errors_total", **err) == 1


async def test_rate_limit_rejections_are_labelled_by_team_and_org(gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        for path, body in (
            ("/admin/orgs", {"id": "metrics-org", "name": "Metrics"}),
            ("/admin/teams", {"id": "metrics-team", "org_id": "metrics-org", "name": "M", "limits": {"rpm": 2}}),
        ):
            async with session.post(gw.base_url + path, json=body, headers=gw.auth()) as resp:
                assert resp.status == 201, await resp.text()
        async with session.post(
            gw.base_url + "/admin/keys", json={"name": "m", "team_id": "metrics-team"}, headers=gw.auth()
        ) as resp:
            assert resp.status == 201, await resp.text()
            key = (await resp.json())["key"]
    statuses = sorted([(await chat(gw, "demo/tollgate-demo", key))[0] for _ in range(5)])
    assert statuses == [200, 200, 429, 429, 429]
    tenant = {"team": "metrics-team", "org": "metrics-org"}
    after = await until(lambda s: total(s, "tollgate_requests_total", **tenant) == 5, gw)
    assert get(after, "tollgate_rate_limit_rejections_total", endpoint="chat", **tenant) == 3
    assert total(after, "tollgate_requests_total", status_class="4xx", provider="", **tenant) == 3
    assert total(after, "tollgate_requests_total", status_class="2xx", provider="demo", **tenant) == 2
    # No key or user id anywhere in the exposition: tenant labels are team and org only.
    assert not any(dict(ls).keys() & {"key", "user"} for _, ls in after)


async def test_in_flight_gauge_and_client_disconnects(gw: RunningGateway) -> None:
    before = await scrape(gw)
    body = orjson.dumps(
        {"model": "openai/scenario-slow_stream", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    host, port = gw.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.master_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await reader.readuntil(b"data: ")  # the stream has started
    assert get(await scrape(gw), "tollgate_requests_in_flight") == 1
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()
    labels = {"endpoint": "chat", "model": "openai/scenario-slow_stream", "provider": "openai", "team": "", "org": ""}
    after = await until(lambda s: get(s, "tollgate_client_disconnects_total", **labels) > 0, gw)
    assert (
        get(after, "tollgate_client_disconnects_total", **labels)
        - get(before, "tollgate_client_disconnects_total", **labels)
        == 1
    )
    assert get(after, "tollgate_requests_total", **labels, status_class="4xx") == 1
    assert get(after, "tollgate_requests_in_flight") == 0


async def test_unrouted_model_names_are_not_labels(gw: RunningGateway) -> None:
    assert (await chat(gw, "no-such-model-6d1f"))[0] == 404
    after = await until(
        lambda s: (
            get(
                s,
                "tollgate_requests_total",
                endpoint="chat",
                model="other",
                provider="",
                status_class="4xx",
                team="",
                org="",
            )
            > 0
        ),
        gw,
    )
    assert not any("no-such-model-6d1f" in dict(ls).values() for _, ls in after)


def test_require_auth_guards_metrics() -> None:
    async def run(gw: RunningGateway) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.base_url + "/metrics") as resp:
                assert resp.status == 401
            async with session.post(gw.base_url + "/admin/keys", json={"name": "u"}, headers=gw.auth()) as resp:
                user_key = (await resp.json())["key"]
            async with session.get(gw.base_url + "/metrics", headers=gw.auth(user_key)) as resp:
                assert resp.status == 403
        samples = await scrape(gw, gw.auth())
        assert get(samples, "tollgate_requests_in_flight") == 0

    with run_gateway("metrics:\n  require_auth: true\n") as gw:
        asyncio.run(run(gw))


def test_disabled_metrics_are_not_served() -> None:
    async def run(gw: RunningGateway) -> None:
        assert (await chat(gw, "demo/tollgate-demo"))[0] == 200
        async with aiohttp.ClientSession() as session, session.get(gw.base_url + "/metrics") as resp:
            assert resp.status == 404

    with run_gateway("metrics:\n  enabled: false\n") as gw:
        asyncio.run(run(gw))


WORKER = textwrap.dedent(
    """
    import sys
    from tollgate.context import Principal, RequestContext
    from tollgate.observability.metrics import GatewayMetrics
    from tollgate.observability.recorder import MetricsRecorder
    from tollgate.providers.base import Deployment

    metrics = GatewayMetrics()
    recorder = MetricsRecorder(metrics, config_version="v1")
    for _ in range(int(sys.argv[1])):
        ctx = RequestContext(request_id="r", front_door="openai", endpoint="chat", config_version="v1")
        ctx.principal = Principal(key_id="k", name="k", role="user", team_id="t", org_id="o")
        ctx.requested_model, ctx.deployment = "fast", Deployment("openai", "openai", "m", "http://x")
        recorder.on_finalize(ctx)
    if sys.argv[2] == "render":
        sys.stdout.write(metrics.render().decode())
    """
)


def test_multiprocess_mode_merges_every_workers_counts(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(n: int, then: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(n), then], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    worker(2, "exit")
    worker(3, "exit")
    text = worker(4, "render")  # the worker that answers the scrape sees all three
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    labels = {"endpoint": "chat", "model": "fast", "provider": "openai", "status_class": "2xx", "team": "t", "org": "o"}
    assert samples[("tollgate_requests_total", frozenset(labels.items()))] == 9
    hist = {"endpoint": "chat", "model": "fast", "provider": "openai", "stream": "false"}
    assert samples[("tollgate_request_duration_seconds_count", frozenset(hist.items()))] == 9
