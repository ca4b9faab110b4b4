"""Shadow traffic on a real gateway: mirrored in the background, compared, recorded apart, never charged."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web
from openai import OpenAI

from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tests.integration.test_resilience import Response, _ask, _post
from tollgate.state.ledger import LedgerRow

CANDIDATE_ANSWER = "Hello from the candidate model."


@dataclass
class Candidate:
    server: FakeServer
    fail: bool = False
    gate: threading.Event | None = None  # when set, each call waits for it
    finished: list[float] = field(default_factory=list)  # when each call's answer was sent (monotonic)


@pytest.fixture
def candidate() -> Iterator[Candidate]:
    state: dict[str, Candidate] = {}

    async def chat(request: web.Request) -> web.Response:
        c = state["c"]
        body = orjson.loads(await request.read())
        if c.gate is not None:
            await asyncio.to_thread(c.gate.wait, 10)
        try:
            if c.fail:
                error = {"error": {"message": "down", "type": "server_error", "param": None, "code": None}}
                return web.json_response(error, status=500)
            out = {
                "id": "chatcmpl-cand",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": CANDIDATE_ANSWER}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46},
            }
            return web.json_response(out)
        finally:
            c.finished.append(time.monotonic())

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        state["c"] = Candidate(server)
        yield state["c"]


def _config(primary: str, cand: str, sample: float = 1.0, max_concurrency: int = 4) -> str:
    return (
        "providers:\n"
        f"  openai: {{api_key: sk-o, base_url: '{primary}/v1'}}\n"
        f"  cand: {{type: openai, api_key: sk-c, base_url: '{cand}/v1'}}\n"
        "models:\n  smart:\n"
        "    deployments:\n      - {provider: openai, model: gpt-4o-mini}\n"
        f"    shadow: {{deployment: cand/gpt-4o, sample: {sample}, max_concurrency: {max_concurrency}}}\n"
        "  plain:\n    deployments:\n      - {provider: openai, model: gpt-4o-mini}\n"
    )


def _report(gw: RunningGateway, model: str = "smart", key: str | None = None) -> Response:
    req = urllib.request.Request(f"{gw.base_url}/admin/shadow?model={model}", headers=gw.auth(key))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Response(resp.status, dict(resp.headers), resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), exc.read().decode())


def _wait_mirrored(gw: RunningGateway, n: int) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = _report(gw).json()
        if report["mirrored"] + report["dropped"] >= n:
            return report  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"shadow calls did not finish: {_report(gw).text}")


def _rows(gw: RunningGateway, request_id: str) -> list[LedgerRow]:
    store = gw.app.gateway.storage.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows: list[LedgerRow] = asyncio.run(store.rows_for_request(request_id))
        if rows:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_requests_are_mirrored_compared_and_recorded_apart(fake_openai: FakeServer, candidate: Candidate) -> None:
    with run_gateway(_config(fake_openai.base_url, candidate.server.base_url)) as gw:
        client = OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        ids = []
        for i in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model="smart", messages=[{"role": "user", "content": f"question {i}"}]
            )
            assert raw.parse().choices[0].message.content == "Hello from the fake OpenAI."  # the primary's answer
            ids.append(raw.headers["x-request-id"])
        raw_stream = client.chat.completions.with_raw_response.create(
            model="smart", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in raw_stream.parse() if c.choices)
        ids.append(raw_stream.headers["x-request-id"])
        assert text == "Hello from the fake OpenAI."
        plain = _ask(gw, "plain")  # no shadow configured for it
        assert plain.status_code == 200
        report = _wait_mirrored(gw, 4)

        # The candidate got each sampled request once, non-streaming, with the client's messages.
        sent = [orjson.loads(r.body) for r in candidate.server.requests]
        assert len(sent) == 4 and all(not b.get("stream") and b["model"] == "gpt-4o" for b in sent)
        assert sorted(b["messages"][0]["content"] for b in sent) == [
            "question 0",
            "question 1",
            "question 2",
            "streamed",
        ]

        assert report["candidate"] == "cand/gpt-4o" and report["mirrored"] == 4 and report["dropped"] == 0
        assert report["primary_deployments"] == {"openai/gpt-4o-mini": 4}
        assert report["primary"]["requests"] == 4 and report["candidate_results"]["errors"] == 0
        assert report["candidate_results"]["input_tokens"] == 160 and report["candidate_results"]["output_tokens"] == 24
        cmp = report["comparison"]
        # {hello, from, the} shared of {hello, from, the, fake, openai, candidate, model}: 3/7, for all four,
        # the stream's text included (collected from its chunks).
        assert cmp["similarity_compared"] == 4
        assert cmp["similarity_jaccard"] == {"mean": round(3 / 7, 4), "p50": round(3 / 7, 4), "min": round(3 / 7, 4)}
        assert 0 < cmp["similarity_sequence"]["mean"] < 1
        assert report["candidate_results"]["cost_usd"] > 0 and cmp["cost_ratio"] > 1  # gpt-4o costs more

        # The shadow's ledger row: its own request id, endpoint 'shadow', no tenant, its cost.
        (row,) = _rows(gw, ids[0] + ":shadow")
        assert row.endpoint == "shadow" and row.key_id is None and row.team_id is None
        assert (row.provider, row.upstream_model, row.input_tokens) == ("cand", "gpt-4o", 40)
        assert row.cost_nanos > 0 and row.tags == {"tollgate_shadow_of": ids[0]}
        (primary_row,) = _rows(gw, ids[0])
        assert primary_row.endpoint == "chat"
        # Spend reports and totals leave it out: only the five client requests count.
        for request_id in (*ids, plain.headers["x-request-id"]):
            _rows(gw, request_id)
        store = gw.app.gateway.storage.ledger
        today = dt.datetime.now(dt.UTC).date()
        totals = asyncio.run(store.scan_totals(today, today))
        assert totals.requests == 5
        by_model = {line.group: line for line in asyncio.run(store.spend("model", today, today))}
        assert set(by_model) == {"openai/gpt-4o-mini"} and by_model["openai/gpt-4o-mini"].requests == 5
        # Metrics: the shadow calls, by candidate and outcome.
        with urllib.request.urlopen(gw.base_url + "/metrics", timeout=10) as m:
            exposition = m.read().decode()
        assert 'tollgate_shadow_calls_total{deployment="cand/gpt-4o",outcome="success"} 4.0' in exposition


def test_the_client_does_not_wait_for_the_shadow_and_overflow_is_dropped(
    fake_openai: FakeServer, candidate: Candidate
) -> None:
    candidate.gate = threading.Event()
    with run_gateway(_config(fake_openai.base_url, candidate.server.base_url, max_concurrency=1)) as gw:
        try:
            for _ in range(3):
                assert _ask(gw, "smart").status_code == 200  # answered while the shadow call is held
            assert candidate.finished == []
            report = _report(gw).json()
            assert report["in_flight"] == 1 and report["dropped"] == 2 and report["mirrored"] == 0
        finally:
            candidate.gate.set()
        report = _wait_mirrored(gw, 3)
        assert report["mirrored"] == 1 and report["dropped"] == 2 and report["in_flight"] == 0
        assert len(candidate.server.requests) == 1


def test_a_failing_candidate_is_reported_not_retried_and_never_seen_by_the_client(
    fake_openai: FakeServer, candidate: Candidate
) -> None:
    candidate.fail = True
    config = _config(fake_openai.base_url, candidate.server.base_url) + "routing:\n  retries: {max_retries: 3}\n"
    with run_gateway(config) as gw:
        for _ in range(2):
            resp = _ask(gw, "smart")
            assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"]
        report = _wait_mirrored(gw, 2)
        assert len(candidate.server.requests) == 2  # one call per sampled request: no retry
        assert report["candidate_results"]["errors"] == 2 and report["candidate_results"]["error_rate"] == 1.0
        assert report["primary"]["errors"] == 0 and report["comparison"]["similarity_compared"] == 0
        # The candidate's failures leave routing alone: its breaker is not even created.
        assert "cand/gpt-4o" not in gw.app.gateway.routing_state.breakers


def test_shadow_calls_are_not_counted_by_rate_limits(fake_openai: FakeServer, candidate: Candidate) -> None:
    with run_gateway(_config(fake_openai.base_url, candidate.server.base_url)) as gw:
        created = _post(gw.base_url + "/admin/keys", {"name": "limited", "limits": {"rpm": 3}}, gw.auth())
        key = created.json()["key"]
        statuses = [_post(gw.base_url + "/v1/chat/completions", _body(), gw.auth(key)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # three requests (and three shadow calls) used three of three
        assert _wait_mirrored(gw, 3)["mirrored"] == 3


def _body() -> dict:  # type: ignore[type-arg]
    return {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}


def test_the_report_endpoint(fake_openai: FakeServer, candidate: Candidate) -> None:
    with run_gateway(_config(fake_openai.base_url, candidate.server.base_url, sample=0.25)) as gw:
        empty = _report(gw).json()
        assert empty["mirrored"] == 0 and empty["sample"] == 0.25 and empty["primary"]["latency_ms"]["p50"] is None
        missing = _report(gw, "plain")
        assert missing.status_code == 404 and "smart" in missing.json()["error"]["message"]
        with urllib.request.urlopen(
            urllib.request.Request(gw.base_url + "/admin/shadow", headers=gw.auth()), timeout=10
        ) as resp:
            listing = orjson.loads(resp.read())
        assert [r["model"] for r in listing["data"]] == ["smart"]
        user = _post(gw.base_url + "/admin/keys", {"name": "u"}, gw.auth()).json()["key"]
        assert _report(gw, key=user).status_code == 403
