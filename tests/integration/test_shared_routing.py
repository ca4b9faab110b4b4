"""Two real gateways sharing the real Redis: a breaker one of them opens is honoured by the other.

Each gateway runs in its own thread and event loop with its own Redis connections, as two replicas would.
Propagation is awaited by polling with a generous deadline; nothing here asserts how fast it is.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis
from aiohttp import web

from tests.contract.conftest import require_redis
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tests.integration.test_resilience import _ask, _explain
from tollgate.state.routing_bus import RedisRoutingBus

DEADLINE = 10.0
FLAKY = "flaky/gpt-4o-mini"


@pytest.fixture
def failing() -> Iterator[FakeServer]:
    """A fake OpenAI whose chat completions always answer 500 (it records every request it gets)."""

    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=500)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        yield server


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = require_redis()
    prefix = f"tollgate:test:{uuid.uuid4().hex}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _config(healthy: str, failing: str, url: str, prefix: str) -> str:
    return (
        "providers:\n"
        f"  openai: {{api_key: sk-o, base_url: '{healthy}/v1'}}\n"
        f"  flaky: {{type: openai, api_key: sk-f, base_url: '{failing}/v1'}}\n"
        "models:\n"
        "  duo:\n    deployments:\n      - {provider: flaky, model: gpt-4o-mini}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
        f"rate_limits: {{counter_url: '{url}', key_prefix: '{prefix}rl:'}}\n"
        "routing:\n"
        "  breaker: {consecutive_failures: 2, open_seconds: 60}\n"
        f"  shared_state: {{key_prefix: '{prefix}routing:', interval_seconds: 0.2}}\n"
    )


def _bus(gw: RunningGateway) -> RedisRoutingBus:
    found = [s for s in gw.app.gateway.services if isinstance(s, RedisRoutingBus)]
    assert len(found) == 1, "a gateway with a Redis counter_url shares its routing state"
    return found[0]


def _wait(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE:g}s: {what}")
        time.sleep(0.01)


@pytest.mark.slow
def test_the_second_gateway_never_calls_a_deployment_the_first_one_tripped(
    fake_openai: FakeServer, failing: FakeServer, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    config = _config(fake_openai.base_url, failing.base_url, url, prefix)
    with run_gateway(config) as first, run_gateway(config) as second:
        _wait(lambda: _bus(first).subscribed.is_set() and _bus(second).subscribed.is_set(), "both subscribed")
        for _ in range(2):  # the first gateway fails over twice and opens the breaker
            resp = _ask(first, "duo")
            assert resp.status_code == 200 and resp.headers["x-tollgate-fallback"] == "true"
        assert len(failing.requests) == 2
        breakers = second.app.gateway.routing_state.breakers
        _wait(lambda: FLAKY in breakers and breakers[FLAKY].state == "open", "the second gateway learns of it")
        for _ in range(5):
            resp = _ask(second, "duo")
            assert resp.status_code == 200
            assert resp.headers["x-tollgate-attempts"] == "1"
            assert resp.headers["x-tollgate-deployment"] == "openai/gpt-4o-mini"
        assert len(failing.requests) == 2  # the second gateway never called it
        first_candidate = _explain(second, "duo").json()["candidates"][0]
        assert first_candidate["deployment"] == FLAKY and first_candidate["skipped"] is True
        assert "2 consecutive failures, on another replica" in first_candidate["skip_reason"]


@pytest.mark.slow
def test_a_gateway_started_later_starts_with_the_open_breaker_and_latency_of_the_fleet(
    fake_openai: FakeServer, failing: FakeServer, redis_prefix: tuple[str, str]
) -> None:
    url, prefix = redis_prefix
    config = _config(fake_openai.base_url, failing.base_url, url, prefix)
    with run_gateway(config) as first:
        _wait(lambda: _bus(first).subscribed.is_set(), "subscribed")
        for _ in range(2):
            assert _ask(first, "duo").status_code == 200
        _wait(lambda: _bus(first).published >= 1, "the opening is in Redis")
        with run_gateway(config) as late:
            _wait(lambda: _bus(late).subscribed.is_set(), "the late gateway subscribed")
            assert late.app.gateway.routing_state.breakers[FLAKY].state == "open"
            resp = _ask(late, "duo")
            assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "1"
            assert len(failing.requests) == 2
            # The first gateway's latency average of the healthy deployment reaches the late one, which has
            # made one call of its own.
            _wait(lambda: "openai/gpt-4o-mini" in _fleet(late), "latency shared")


def _fleet(gw: RunningGateway) -> dict[str, object]:
    return dict(gw.app.gateway.routing_state.fleet_latency)


def test_the_metrics_count_no_sync_errors_with_redis_up(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    config = (
        f"rate_limits: {{counter_url: '{url}', key_prefix: '{prefix}rl:'}}\n"
        f"routing:\n  shared_state: {{key_prefix: '{prefix}routing:', interval_seconds: 0.2}}\n"
    )
    with run_gateway(config) as gw:
        _wait(lambda: _bus(gw).exchanges >= 2, "two latency exchanges")
        assert _bus(gw).errors == 0
        text = _get_metrics(gw)
        assert "tollgate_routing_sync_errors_total 0.0" in text


def _get_metrics(gw: RunningGateway) -> str:
    req = urllib.request.Request(gw.base_url + "/metrics", headers=gw.auth())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def test_no_bus_without_a_redis_counter_url_or_when_turned_off(redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    with run_gateway("routing:\n  shared_state: {enabled: true}\n") as gw:  # in-process counters
        assert not [s for s in gw.app.gateway.services if isinstance(s, RedisRoutingBus)]
    off = f"rate_limits: {{counter_url: '{url}', key_prefix: '{prefix}rl:'}}\n" + (
        "routing:\n  shared_state: {enabled: false}\n"
    )
    with run_gateway(off) as gw:
        assert not [s for s in gw.app.gateway.services if isinstance(s, RedisRoutingBus)]
