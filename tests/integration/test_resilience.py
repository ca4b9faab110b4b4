"""Resilience on a real gateway against fake providers: breakers, Retry-After, the retry budget, timeouts, streams.

Breaker timing uses the routing state's injected clock, so no test sleeps through an open period.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from aiohttp import web

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway

CHAT = "/v1/chat/completions"
DUO = (
    "  duo:\n    deployments:\n      - {provider: flaky, model: gpt-4o-mini}\n"
    "      - {provider: openai, model: gpt-4o-mini}\n"
)


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> dict:  # type: ignore[type-arg]
        return orjson.loads(self.text)  # type: ignore[no-any-return]


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> Response:
    req = urllib.request.Request(
        url, data=orjson.dumps(body), headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def flaky() -> Iterator[tuple[FakeServer, dict[str, bool]]]:
    """A fake OpenAI that answers 500 while ``mode['fail']`` is set, and normally otherwise."""
    mode = {"fail": True}

    async def chat(request: web.Request) -> web.StreamResponse:
        if mode["fail"]:
            return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=500)
        return await openai_server.chat(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        yield server, mode


def _config(fake: str, extra: str = "", models: str = "", flaky: str | None = None) -> str:
    flaky_provider = f"  flaky: {{type: openai, api_key: sk-f, base_url: '{flaky}/v1'}}\n" if flaky else ""
    return (
        "providers:\n"
        f"  openai: {{api_key: sk-o, base_url: '{fake}/v1', timeouts: {{read: 0.5}}}}\n"
        f"{flaky_provider}"
        f"models:\n{models}{extra}"
    )


def _calls(fake: FakeServer, model: str) -> int:
    return sum(1 for r in fake.requests if orjson.loads(r.body).get("model") == model)


def _ask(gw: RunningGateway, model: str, **extra: object) -> Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return _post(gw.base_url + CHAT, body, gw.auth())


def _clock(gw: RunningGateway) -> Clock:
    clock = Clock()
    gw.app.gateway.dispatcher.state.clock = clock
    return clock


def _explain(gw: RunningGateway, model: str, key: str | None = None) -> Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return _post(gw.base_url + "/v1/route/explain", body, gw.auth(key))


def test_breaker_opens_skips_the_deployment_and_a_half_open_probe_closes_it(
    fake_openai: FakeServer, flaky: tuple[FakeServer, dict[str, bool]]
) -> None:
    flaky_server, mode = flaky
    models = DUO
    extra = "routing:\n  breaker: {consecutive_failures: 3, open_seconds: 30}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models, flaky_server.base_url)) as gw:
        clock = _clock(gw)
        for _ in range(3):
            resp = _ask(gw, "duo")
            assert resp.status_code == 200
            assert resp.headers["x-tollgate-attempts"] == "2" and resp.headers["x-tollgate-fallback"] == "true"
        assert len(flaky_server.requests) == 3
        # Open: later requests skip the flaky deployment without calling it.
        for _ in range(5):
            resp = _ask(gw, "duo")
            assert resp.status_code == 200
            assert resp.headers["x-tollgate-attempts"] == "1"
            assert resp.headers["x-tollgate-deployment"] == "openai/gpt-4o-mini"
            assert resp.headers["x-tollgate-route-strategy"] == "priority"
        assert len(flaky_server.requests) == 3
        explained = _explain(gw, "duo").json()
        first = explained["candidates"][0]
        assert first["deployment"] == "flaky/gpt-4o-mini" and first["skipped"] is True
        assert first["breaker"]["state"] == "open" and "3 consecutive failures" in first["skip_reason"]
        assert explained["chosen"] == "openai/gpt-4o-mini"
        # After the open period: one probe goes to the recovered deployment and closes the breaker.
        clock.now += 30
        mode["fail"] = False
        resp = _ask(gw, "duo")
        assert resp.status_code == 200 and resp.headers["x-tollgate-deployment"] == "flaky/gpt-4o-mini"
        assert "x-tollgate-fallback" not in resp.headers
        assert len(flaky_server.requests) == 4
        assert _explain(gw, "duo").json()["candidates"][0]["breaker"]["state"] == "closed"


def test_failed_probe_reopens_the_breaker(fake_openai: FakeServer, flaky: tuple[FakeServer, dict[str, bool]]) -> None:
    flaky_server, _ = flaky
    models = DUO
    extra = "routing:\n  breaker: {consecutive_failures: 2, open_seconds: 10}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models, flaky_server.base_url)) as gw:
        clock = _clock(gw)
        for _ in range(2):
            assert _ask(gw, "duo").status_code == 200
        clock.now += 10
        assert _ask(gw, "duo").headers["x-tollgate-attempts"] == "2"  # the probe failed, then the fallback
        assert len(flaky_server.requests) == 3
        assert _ask(gw, "duo").headers["x-tollgate-attempts"] == "1"  # open again: skipped
        assert len(flaky_server.requests) == 3


def test_every_candidate_open_fails_fast_with_503_naming_the_model(fake_openai: FakeServer) -> None:
    models = "  doomed:\n    deployments:\n      - {provider: openai, model: scenario-500}\n"
    extra = "routing:\n  breaker: {consecutive_failures: 2, open_seconds: 60}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models)) as gw:
        _clock(gw)
        before = _calls(fake_openai, "scenario-500")
        assert [_ask(gw, "doomed").status_code for _ in range(2)] == [502, 502]
        resp = _ask(gw, "doomed")
        assert resp.status_code == 503
        error = resp.json()["error"]
        assert error["code"] == "no_healthy_deployment"
        assert "'doomed'" in error["message"] and "circuit breaker open" in error["message"]
        assert resp.headers["retry-after"] == "60"
        assert _calls(fake_openai, "scenario-500") == before + 2


def test_long_retry_after_is_not_waited_the_next_deployment_answers(fake_openai: FakeServer) -> None:
    models = (
        "  limited:\n    deployments:\n      - {provider: openai, model: scenario-429_retry_after}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    extra = "routing:\n  retries: {max_retries: 2, retry_after_max: 2}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models)) as gw:
        before = _calls(fake_openai, "scenario-429_retry_after")
        resp = _ask(gw, "limited")
        assert resp.status_code == 200
        assert resp.headers["x-tollgate-attempts"] == "2"
        assert resp.headers["x-tollgate-deployment"] == "openai/gpt-4o-mini"
        assert _calls(fake_openai, "scenario-429_retry_after") == before + 1  # not retried after Retry-After: 7


def test_retries_the_same_deployment_with_backoff_before_falling_back(fake_openai: FakeServer) -> None:
    models = (
        "  retried:\n    deployments:\n      - {provider: openai, model: scenario-500}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    extra = "routing:\n  retries: {max_retries: 2, backoff_base: 0.001}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models)) as gw:
        before = _calls(fake_openai, "scenario-500")
        resp = _ask(gw, "retried")
        assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "4"
        assert _calls(fake_openai, "scenario-500") == before + 3


def test_retry_budget_caps_extra_upstream_calls_under_a_failing_provider(fake_openai: FakeServer) -> None:
    models = "  failing:\n    deployments:\n      - {provider: openai, model: scenario-500}\n"
    extra = (
        "routing:\n  retries: {max_retries: 3, backoff_base: 0.001}\n"
        "  retry_budget: {ratio: 0.2, window_seconds: 60, min_retries: 2}\n  breaker: {enabled: false}\n"
    )
    with run_gateway(_config(fake_openai.base_url, extra, models)) as gw:
        before = _calls(fake_openai, "scenario-500")
        requests = 30
        assert all(_ask(gw, "failing").status_code == 502 for _ in range(requests))
        extra_calls = _calls(fake_openai, "scenario-500") - before - requests
        assert 0 < extra_calls <= 0.2 * requests + 2  # without the budget: 3 x 30 = 90


def test_timeout_falls_back_and_a_lone_timeout_is_504(fake_openai: FakeServer) -> None:
    models = (
        "  slow:\n    deployments:\n      - {provider: openai, model: scenario-timeout_before_headers}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    with run_gateway(_config(fake_openai.base_url, "", models)) as gw:
        resp = _ask(gw, "slow")
        assert resp.status_code == 200 and resp.headers["x-tollgate-fallback"] == "true"
        assert _ask(gw, "openai/scenario-timeout_before_headers").status_code == 504


def test_no_retry_after_the_first_streamed_byte(fake_openai: FakeServer) -> None:
    models = (
        "  cut:\n    deployments:\n      - {provider: openai, model: scenario-cut_stream}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    extra = "routing:\n  retries: {max_retries: 3}\n"
    with run_gateway(_config(fake_openai.base_url, extra, models)) as gw:
        before_cut, before_ok = _calls(fake_openai, "scenario-cut_stream"), _calls(fake_openai, "gpt-4o-mini")
        resp = _ask(gw, "cut", stream=True)
        assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "1"
        assert '"error"' in resp.text  # the terminal error event
        assert _calls(fake_openai, "scenario-cut_stream") == before_cut + 1
        assert _calls(fake_openai, "gpt-4o-mini") == before_ok
        ok = _ask(gw, "openai/gpt-4o-mini", stream=True)
        assert ok.status_code == 200 and "[DONE]" in ok.text
        state = gw.app.gateway.dispatcher.state
        # Streams give their in-flight slot back when they end, and a complete one records its total time.
        deadline = time.monotonic() + 2
        while any(state.in_flight.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.in_flight == {"openai/scenario-cut_stream": 0, "openai/gpt-4o-mini": 0}
        stats = state.latency["openai/gpt-4o-mini"]
        assert stats.ttfb is not None and stats.total is not None and stats.samples == 1


def test_explain_needs_an_admin_key_and_calls_no_provider(fake_openai: FakeServer) -> None:
    models = (
        "  smart:\n    strategy: weighted\n    deployments:\n"
        "      - {provider: openai, model: gpt-4o, weight: 3, region: eu, tags: [gold]}\n"
        "      - {provider: openai, model: gpt-4o-mini, priority: 1}\n"
    )
    with run_gateway(_config(fake_openai.base_url, "", models)) as gw:
        before = len(fake_openai.requests)
        out = _explain(gw, "smart")
        assert out.status_code == 200
        data = out.json()
        assert data["strategy"] == "weighted" and data["model"] == "smart" and data["logical"] is True
        assert [c["deployment"] for c in data["candidates"]] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
        assert data["candidates"][0]["region"] == "eu" and data["candidates"][0]["tags"] == ["gold"]
        assert "tier 1" in data["candidates"][1]["why_here"]
        assert data["chosen"] == "openai/gpt-4o" and data["config_version"]
        assert len(fake_openai.requests) == before
        user = _post(gw.base_url + "/admin/keys", {"name": "app"}, gw.auth()).json()
        assert _explain(gw, "smart", user["key"]).status_code == 403
        assert _post(gw.base_url + "/v1/route/explain", {}).status_code == 401
