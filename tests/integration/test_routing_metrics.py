"""Routing decisions, retries, fallbacks, skips and breaker transitions show up in /metrics, per deployment.

A real gateway against fake providers (one answers 500 on demand); the breaker's clock is the routing
state's injected one, so no test sleeps through an open period.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tests.integration.test_resilience import DUO, _ask, _clock, _config

FLAKY = "flaky/gpt-4o-mini"
OPENAI = "openai/gpt-4o-mini"


@pytest.fixture
def flaky() -> Iterator[tuple[FakeServer, dict[str, bool]]]:
    mode = {"fail": True}

    async def chat(request: web.Request) -> web.StreamResponse:
        if mode["fail"]:
            return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=500)
        return await openai_server.chat(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        yield server, mode


def _scrape(gw: RunningGateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(gw.base_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels`` (0 when there is none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_fallbacks_skips_and_breaker_transitions_are_counted_per_deployment(
    fake_openai: FakeServer, flaky: tuple[FakeServer, dict[str, bool]]
) -> None:
    _, mode = flaky
    extra = "routing:\n  breaker: {consecutive_failures: 3, open_seconds: 30}\n"
    with run_gateway(_config(fake_openai.base_url, extra, DUO, flaky[0].base_url)) as gw:
        clock = _clock(gw)
        before = _scrape(gw)
        assert _value(before, "tollgate_breaker_state", deployment=FLAKY) == 0
        assert _value(before, "tollgate_deployment_in_flight", deployment=OPENAI) == 0
        for _ in range(3):  # flaky fails, openai answers: the third failure opens flaky's breaker
            assert _ask(gw, "duo").status_code == 200
        for _ in range(4):  # open: flaky is skipped without a call
            assert _ask(gw, "duo").status_code == 200
        m = _scrape(gw)
        assert _value(m, "tollgate_deployment_calls_total", deployment=FLAKY, outcome="retryable_error") == 3
        assert _value(m, "tollgate_deployment_calls_total", deployment=FLAKY, outcome="success") == 0
        assert _value(m, "tollgate_deployment_calls_total", deployment=OPENAI, outcome="success") == 7
        assert _value(m, "tollgate_deployment_fallbacks_total", deployment=FLAKY) == 3
        assert _value(m, "tollgate_deployment_skips_total", deployment=FLAKY, reason="breaker_open") == 4
        assert _value(m, "tollgate_breaker_transitions_total", deployment=FLAKY, state="open") == 1
        assert _value(m, "tollgate_breaker_state", deployment=FLAKY) == 2
        assert _value(m, "tollgate_breaker_state", deployment=OPENAI) == 0
        decisions = "tollgate_routing_decisions_total"
        assert _value(m, decisions, model="duo", deployment=OPENAI, outcome="fallback") == 7
        assert _value(m, decisions, model="duo", outcome="primary") == 0
        # The per-request counters agree: three requests made two attempts.
        assert _value(m, "tollgate_retries_total", model="duo") == 3

        # Open time over: half-open, the probe succeeds, the breaker closes.
        mode["fail"] = False
        clock.now += 31
        resp = _ask(gw, "duo")
        assert resp.status_code == 200 and "x-tollgate-fallback" not in resp.headers
        m = _scrape(gw)
        assert _value(m, "tollgate_breaker_transitions_total", deployment=FLAKY, state="half_open") == 1
        assert _value(m, "tollgate_breaker_transitions_total", deployment=FLAKY, state="closed") == 1
        assert _value(m, "tollgate_breaker_state", deployment=FLAKY) == 0
        assert _value(m, decisions, model="duo", deployment=FLAKY, outcome="primary") == 1


def test_same_deployment_retries_and_unavailable_routes_are_counted(
    fake_openai: FakeServer, flaky: tuple[FakeServer, dict[str, bool]]
) -> None:
    extra = (
        "routing:\n  retries: {max_retries: 1, backoff_base: 0.001}\n"
        "  breaker: {consecutive_failures: 2, open_seconds: 30}\n"
    )
    models = "  solo:\n    deployments:\n      - {provider: flaky, model: gpt-4o-mini}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models, flaky[0].base_url)) as gw:
        _clock(gw)
        assert _ask(gw, "solo").status_code == 502  # a call, a retry, both fail: the breaker opens
        assert _ask(gw, "solo").status_code == 503  # open: nothing to call
        m = _scrape(gw)
        assert _value(m, "tollgate_deployment_retries_total", deployment=FLAKY) == 1
        assert _value(m, "tollgate_deployment_calls_total", deployment=FLAKY, outcome="retryable_error") == 2
        assert _value(m, "tollgate_deployment_fallbacks_total", deployment=FLAKY) == 0  # nothing to fall back to
        decisions = "tollgate_routing_decisions_total"
        assert _value(m, decisions, model="solo", deployment=FLAKY, outcome="failed") == 1
        assert _value(m, decisions, model="solo", deployment="", outcome="unavailable") == 1


def test_direct_addresses_are_not_deployment_labels(fake_openai: FakeServer) -> None:
    models = "  fast:\n    deployments:\n      - {provider: openai, model: gpt-4o-mini}\n"
    with run_gateway(_config(fake_openai.base_url, "", models)) as gw:
        for name in ("openai/gpt-4o", "openai/gpt-4.1", "openai/gpt-4o-mini"):
            assert _ask(gw, name).status_code == 200
        m = _scrape(gw)
        labels = {dict(ls).get("deployment") for (n, ls) in m if n == "tollgate_deployment_calls_total"}
        assert labels == {"other", OPENAI}
        assert _value(m, "tollgate_deployment_calls_total", deployment="other") == 2
        gauges = {dict(ls)["deployment"] for (n, ls) in m if n == "tollgate_breaker_state"}
        assert gauges == {OPENAI}


def test_in_flight_per_deployment_covers_a_stream_until_its_end(fake_openai: FakeServer) -> None:
    models = "  slow:\n    deployments:\n      - {provider: openai, model: gpt-4o-mini-scenario-slow_stream}\n"
    key = "openai/gpt-4o-mini-scenario-slow_stream"
    with run_gateway(_config(fake_openai.base_url, "", models)) as gw:
        started = threading.Event()
        seen: list[float] = []

        def stream() -> None:
            body = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
            headers = {"content-type": "application/json", **gw.auth()}
            req = urllib.request.Request(gw.base_url + "/v1/chat/completions", data=body, headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.readline()  # the first event arrived: the stream is open
                started.set()
                seen.append(_value(_scrape(gw), "tollgate_deployment_in_flight", deployment=key))
                resp.read()

        worker = threading.Thread(target=stream)
        worker.start()
        assert started.wait(10)
        worker.join(10)
        assert seen == [1]
        assert _value(_scrape(gw), "tollgate_deployment_in_flight", deployment=key) == 0
