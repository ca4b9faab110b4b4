"""The exact response cache through the running gateway: hits skip the provider, in every client format."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import time
import uuid
from collections.abc import Iterator

import anthropic
import openai
import pytest
import requests

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway
from tollgate.state.ledger import LedgerRow

MODEL = "openai/gpt-4o-mini"
ANSWER = "Hello from the fake OpenAI."


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway("", env) as running:
        yield running


def _prompt() -> str:
    """A prompt no other test sends: the fake's request log tells how often this one reached the provider."""
    return f"what is the answer? [{uuid.uuid4().hex}]"


def _upstream_calls(fake: FakeServer, marker: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions") and marker.encode() in r.body)


def _chat(
    gw: RunningGateway, body: dict, key: str | None = None, headers: dict[str, str] | None = None
) -> requests.Response:  # type: ignore[type-arg]
    resp = requests.post(
        gw.openai_base + "/chat/completions", json=body, headers={**gw.auth(key), **(headers or {})}, timeout=10
    )
    assert resp.status_code == 200, resp.text
    return resp


def _body(prompt: str, **extra: object) -> dict:  # type: ignore[type-arg]
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0, **extra}


def test_openai_sdk_repeat_is_a_hit_and_skips_the_provider(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    prompt = _prompt()
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    second = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    assert first.headers["x-tollgate-cache"] == "miss"
    assert second.headers["x-tollgate-cache"] == "hit"
    assert "x-tollgate-provider" not in second.headers  # nothing was dispatched
    answer = second.parse()
    assert answer.choices[0].message.content == ANSWER
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    assert _upstream_calls(fake_openai, prompt) == 1


def test_a_streamed_answer_is_stored_and_replayed_as_a_stream_with_usage(
    gw: RunningGateway, fake_openai: FakeServer
) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    prompt = _prompt()
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]

    def stream_once(include_usage: bool) -> tuple[str, str, list[str | None], int | None]:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=messages,
            temperature=0,
            stream=True,
            stream_options={"include_usage": include_usage},
        )
        text, finishes, usage = "", [], None
        for chunk in raw.parse():
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finishes.append(choice.finish_reason)
        return raw.headers["x-tollgate-cache"], text, finishes, usage

    assert stream_once(True) == ("miss", ANSWER, [None] * 6 + ["stop"], 5)
    time.sleep(0.1)  # streams are stored just after their last chunk
    status, text, finishes, usage = stream_once(True)
    assert (status, text, finishes[-1], usage) == ("hit", ANSWER, "stop", 5)
    assert stream_once(False)[3] is None  # no usage chunk unless asked for
    # The same question without streaming is the same entry.
    hit = _chat(gw, _body(prompt))
    assert hit.headers["x-tollgate-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == ANSWER
    assert _upstream_calls(fake_openai, prompt) == 1


def test_streamed_tool_calls_are_replayed_whole(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    prompt = _prompt()
    tools: list[openai.types.chat.ChatCompletionToolParam] = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
    ]

    def calls() -> list[tuple[str | None, str | None, str]]:
        out: dict[int, list[str]] = {}
        ids: dict[int, tuple[str | None, str | None]] = {}
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], tools=tools, temperature=0, stream=True
        )
        for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or []:
                    if call.id:
                        ids[call.index] = (call.id, call.function.name if call.function else None)
                    out.setdefault(call.index, []).append((call.function.arguments if call.function else "") or "")
        return [(*ids[i], "".join(parts)) for i, parts in sorted(out.items())]

    fresh = calls()
    time.sleep(0.1)
    assert calls() == fresh == [("call_fake123", "weather", '{"city": "Paris"}')]
    assert _upstream_calls(fake_openai, prompt) == 1


def test_anthropic_sdk_message_and_stream_hits(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    prompt = _prompt()
    kwargs = {
        "model": MODEL,
        "max_tokens": 50,
        "extra_body": {"temperature": 0},
        "messages": [{"role": "user", "content": prompt}],
    }
    first = client.messages.with_raw_response.create(**kwargs)  # type: ignore[call-overload]
    second = client.messages.with_raw_response.create(**kwargs)  # type: ignore[call-overload]
    assert (first.headers["x-tollgate-cache"], second.headers["x-tollgate-cache"]) == ("miss", "hit")
    message = second.parse()
    assert message.content[0].text == ANSWER and message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 5
    with client.messages.stream(**kwargs) as stream:  # a stream served from the entry a message stored
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert final.content[0].text == ANSWER and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 5
    assert _upstream_calls(fake_openai, prompt) == 1


def test_anthropic_stream_is_stored_from_its_chunks(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    prompt = _prompt()
    texts = []
    for _ in range(2):
        with client.messages.stream(
            model=MODEL, max_tokens=50, extra_body={"temperature": 0}, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            texts.append(stream.get_final_message().content[0].text)  # type: ignore[union-attr]
        time.sleep(0.1)
    assert texts == [ANSWER, ANSWER]
    assert _upstream_calls(fake_openai, prompt) == 1


def test_simple_chat_reports_cache_hit(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    results = []
    for _ in range(2):
        resp = requests.post(
            gw.base_url + "/chat",
            json={"prompt": prompt, "model": MODEL, "temperature": 0},
            headers=gw.auth(),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        results.append((resp.headers["x-tollgate-cache"], resp.json()["cache_hit"], resp.json()["response"]))
    assert results == [("miss", False, ANSWER), ("hit", True, ANSWER)]
    assert _upstream_calls(fake_openai, prompt) == 1


def test_sampled_requests_are_not_cached_by_default(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    for body in (_body(prompt, temperature=0.7), {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}):
        for _ in range(2):
            assert _chat(gw, body).headers["x-tollgate-cache"] == "skip"
    seeded = _body(prompt, temperature=0.7, seed=7)  # a seed makes sampling repeatable: cached
    assert [_chat(gw, seeded).headers["x-tollgate-cache"] for _ in range(2)] == ["miss", "hit"]
    assert _upstream_calls(fake_openai, prompt) == 5


def test_what_changes_the_answer_changes_the_key(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    _chat(gw, _body(prompt))
    for variant in (
        _body(prompt, max_tokens=7),
        _body(prompt, top_p=0.5),
        _body(prompt, stop=["x"]),
        _body(prompt, n=1),
    ):
        assert _chat(gw, variant).headers["x-tollgate-cache"] == "miss"
    # Fields that do not change the answer do not: metadata, user, stream_options.
    same = _body(prompt, metadata={"team": "x"}, user="u-1")
    assert _chat(gw, same).headers["x-tollgate-cache"] == "hit"
    assert _upstream_calls(fake_openai, prompt) == 5


def test_client_cache_control(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    body = _body(prompt)
    status = [_chat(gw, body, headers={"Cache-Control": "no-store"}).headers["x-tollgate-cache"]]
    status.append(_chat(gw, body, headers={"x-tollgate-cache": "skip"}).headers["x-tollgate-cache"])
    status.append(_chat(gw, body).headers["x-tollgate-cache"])  # nothing was stored: a miss, which stores
    status.append(_chat(gw, body, headers={"Cache-Control": "no-cache"}).headers["x-tollgate-cache"])
    status.append(_chat(gw, body, headers={"x-tollgate-cache": "refresh"}).headers["x-tollgate-cache"])
    status.append(_chat(gw, body).headers["x-tollgate-cache"])
    assert status == ["skip", "skip", "miss", "skip", "skip", "hit"]
    assert _upstream_calls(fake_openai, prompt) == 5


def test_per_request_ttl_from_metadata(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    body = _body(prompt, metadata={"tollgate_cache_ttl": 0.3})
    assert [_chat(gw, body).headers["x-tollgate-cache"] for _ in range(2)] == ["miss", "hit"]
    time.sleep(0.5)
    assert _chat(gw, body).headers["x-tollgate-cache"] == "miss"
    assert _upstream_calls(fake_openai, prompt) == 2


def test_errors_and_cut_streams_are_never_stored(gw: RunningGateway, fake_openai: FakeServer) -> None:
    prompt = _prompt()
    failing = _body(prompt, model="openai/gpt-4o-mini-scenario-500")
    for _ in range(2):
        resp = requests.post(gw.openai_base + "/chat/completions", json=failing, headers=gw.auth())
        assert resp.status_code >= 500 and resp.headers["x-tollgate-cache"] == "miss"
    cut = _body(prompt, model="openai/gpt-4o-mini-scenario-cut_stream", stream=True)
    for _ in range(2):
        with requests.post(gw.openai_base + "/chat/completions", json=cut, headers=gw.auth(), stream=True) as resp:
            text = resp.content.decode()
            assert resp.headers["x-tollgate-cache"] == "miss"
        assert '"error"' in text  # the client saw the stream fail
        time.sleep(0.1)
    assert _upstream_calls(fake_openai, prompt) == 4


def _admin(gw: RunningGateway, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    resp = requests.post(gw.base_url + path, json=body, headers=gw.auth())
    assert resp.status_code in (200, 201), resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_entries_never_cross_orgs_and_hits_cost_nothing(gw: RunningGateway, fake_openai: FakeServer) -> None:
    suffix = uuid.uuid4().hex[:8]
    keys: dict[str, str] = {}
    for org in ("a", "b"):
        org_id = f"org-{org}-{suffix}"
        _admin(gw, "/admin/orgs", {"id": org_id, "name": org_id})
        _admin(gw, "/admin/teams", {"id": f"team-{org}-{suffix}", "org_id": org_id, "name": "t"})
        for n in (1, 2):
            created = _admin(gw, "/admin/keys", {"name": f"{org}{n}", "team_id": f"team-{org}-{suffix}"})
            keys[f"{org}{n}"] = created["key"]
    prompt = _prompt()
    body = _body(prompt)
    seen = {name: _chat(gw, body, key=keys[name]).headers["x-tollgate-cache"] for name in ("a1", "b1", "a2", "b2")}
    # Each org pays for its own first answer; its second key shares the org's entry (scope: org).
    assert seen == {"a1": "miss", "b1": "miss", "a2": "hit", "b2": "hit"}
    assert _upstream_calls(fake_openai, prompt) == 2

    stats = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth()).json()
    assert stats["enabled"] is True and stats["backend"] == "memory" and stats["entries"] >= 2
    org_a = stats["by_scope"][f"org:org-a-{suffix}"]
    assert (org_a["hits"], org_a["misses"], org_a["stores"]) == (1, 1, 1)
    assert org_a["tokens_saved"] > 0 and float(org_a["usd_saved"]) > 0
    # A plain key may not read or change the cache.
    assert requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(keys["a1"])).status_code == 403

    # Invalidating org a drops only its entry.
    assert _admin(gw, "/admin/cache/invalidate", {"org": f"org-a-{suffix}"})["deleted"] == 1
    assert _chat(gw, body, key=keys["a1"]).headers["x-tollgate-cache"] == "miss"
    assert _chat(gw, body, key=keys["b1"]).headers["x-tollgate-cache"] == "hit"
    bad = requests.post(gw.base_url + "/admin/cache/invalidate", json={"org": "x", "model": "y"}, headers=gw.auth())
    assert bad.status_code == 400

    # The ledger records hits at cost 0: team a paid for 2 answers out of 3 requests, team b for 1 of 3.
    time.sleep(0.5)  # the ledger writer batches
    report = requests.get(gw.base_url + "/admin/spend?by=team&format=json", headers=gw.auth()).json()
    teams = {row["team"]: row for row in report["data"]}
    team_a, team_b = teams[f"team-a-{suffix}"], teams[f"team-b-{suffix}"]
    assert team_a["requests"] == 3 and team_b["requests"] == 3
    assert team_a["cost_nanousd"] > 0 and team_a["cost_nanousd"] == 2 * team_b["cost_nanousd"]
    assert _chat(gw, body, key=keys["a2"]).headers["x-tollgate-cache"] == "hit"
    time.sleep(0.5)
    report = requests.get(gw.base_url + "/admin/spend?by=team&format=json", headers=gw.auth()).json()
    after = {row["team"]: row for row in report["data"]}[f"team-a-{suffix}"]
    assert after["requests"] == 4 and after["cost_nanousd"] == team_a["cost_nanousd"]


def _ledger_row(gw: RunningGateway, request_id: str) -> LedgerRow:
    """The request's ledger row, once the writer (FINALIZE runs after the response, then a batch) stored it."""
    store = gw.app.gateway.storage.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows: list[LedgerRow] = asyncio.run(store.rows_for_request(request_id))
        if rows:
            (row,) = rows
            return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_a_hit_costs_nothing_and_records_what_it_saved(gw: RunningGateway, fake_openai: FakeServer) -> None:
    suffix = uuid.uuid4().hex[:8]
    team = f"team-saved-{suffix}"
    _admin(gw, "/admin/orgs", {"id": f"org-saved-{suffix}", "name": "o"})
    _admin(gw, "/admin/teams", {"id": team, "org_id": f"org-saved-{suffix}", "name": team})
    key = _admin(gw, "/admin/keys", {"name": "saver", "team_id": team})["key"]
    client = openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": _prompt()}]
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    second = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    assert (first.headers["x-tollgate-cache"], second.headers["x-tollgate-cache"]) == ("miss", "hit")

    paid = _ledger_row(gw, first.headers["x-request-id"])
    hit = _ledger_row(gw, second.headers["x-request-id"])
    assert paid.cost_nanos > 0 and not paid.cache_hit and paid.cost_saved_nanos == 0
    # The hit cost nothing, and saved exactly what the same answer cost when the provider gave it.
    assert hit.cache_hit and hit.cost_nanos == 0
    assert hit.cost_saved_nanos == paid.cost_nanos
    assert (hit.input_tokens, hit.output_tokens) == (paid.input_tokens, paid.output_tokens)

    # The team's spend report (from the daily aggregates), as JSON and CSV.
    report = requests.get(gw.base_url + f"/admin/spend?by=day&team={team}", headers=gw.auth(), timeout=10).json()
    total = report["total"]
    assert (total["requests"], total["cache_hits"]) == (2, 1)
    assert (total["cost_nanousd"], total["cost_saved_nanousd"]) == (paid.cost_nanos, paid.cost_nanos)
    assert total["cost_saved_usd"] == total["cost_usd"]
    assert total["latency_mean_ms"] > 0 and total["latency_p95_ms"] >= total["latency_p50_ms"] > 0
    text = requests.get(gw.base_url + f"/admin/spend?by=day&team={team}&format=csv", headers=gw.auth(), timeout=10).text
    head, *_, last = list(csv.reader(io.StringIO(text)))
    assert last[0] == "TOTAL" and last[head.index("cost_saved_usd")] == total["cost_saved_usd"]
    assert last[head.index("cache_hits")] == "1"
    # The cache stats read the same savings from the ledger (every replica's, when it is shared).
    stats = requests.get(gw.base_url + "/admin/cache/stats?days=1", headers=gw.auth(), timeout=10).json()
    assert stats["ledger"]["hits"] >= 1 and stats["ledger"]["nanousd_saved"] >= paid.cost_nanos
    assert stats["ledger"]["since"] == stats["ledger"]["until"]
    overview = requests.get(gw.base_url + "/admin/overview?days=1", headers=gw.auth(), timeout=10).json()
    assert overview["total"]["cost_saved_nanousd"] >= paid.cost_nanos


def test_invalidate_by_model_and_all(gw: RunningGateway) -> None:
    prompt = _prompt()
    _chat(gw, _body(prompt))
    assert _admin(gw, "/admin/cache/invalidate", {"model": MODEL})["deleted"] >= 1
    assert _chat(gw, _body(prompt)).headers["x-tollgate-cache"] == "miss"
    assert _admin(gw, "/admin/cache/invalidate", {"all": True})["deleted"] >= 1
    assert requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth()).json()["entries"] == 0


def test_a_disabled_cache_adds_no_header(fake_openai: FakeServer) -> None:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway("cache:\n  enabled: false\n", env) as running:
        prompt = _prompt()
        for _ in range(2):
            assert "x-tollgate-cache" not in _chat(running, _body(prompt)).headers
        assert _upstream_calls(fake_openai, prompt) == 2
        stats = requests.get(running.base_url + "/admin/cache/stats", headers=running.auth(), timeout=10).json()
        assert stats["enabled"] is False and stats["process"]["skips"] == 0 and stats["entries"] == 0


def test_a_shared_redis_cache_serves_another_gateway(fake_openai: FakeServer) -> None:
    from tests.contract.conftest import require_redis

    url = require_redis()
    prefix = f"tollgate:test-cache:{uuid.uuid4().hex}:"
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    config = f"cache:\n  url: {url}\n  key_prefix: '{prefix}'\n"
    prompt = _prompt()
    with run_gateway(config, env) as one, run_gateway(config, env) as two:
        assert _chat(one, _body(prompt)).headers["x-tollgate-cache"] == "miss"
        assert _chat(two, _body(prompt)).headers["x-tollgate-cache"] == "hit"
        stats = requests.get(two.base_url + "/admin/cache/stats", headers=two.auth()).json()
        assert stats["backend"] == "redis" and stats["entries"] == 1
        assert _admin(two, "/admin/cache/invalidate", {"all": True})["deleted"] == 1
    assert _upstream_calls(fake_openai, prompt) == 1


def test_cli_asks_the_running_gateway(gw: RunningGateway, capsys: pytest.CaptureFixture[str]) -> None:
    from tollgate.cli import main

    prompt = _prompt()
    _chat(gw, _body(prompt))
    base = ["cache", "--url", gw.base_url, "--key", gw.master_key]
    assert main([*base, "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["enabled"] is True and stats["entries"] >= 1
    assert main([*base, "invalidate", "--model", MODEL]) == 0
    assert json.loads(capsys.readouterr().out)["invalidated"] == f"model:{MODEL}"
    assert _chat(gw, _body(prompt)).headers["x-tollgate-cache"] == "miss"
    assert main(["cache", "--url", gw.base_url, "--key", "tg-wrong", "stats"]) == 1


def test_a_stream_cut_at_the_budget_is_not_stored() -> None:
    from tests.integration.test_budgets import LONG, PER_TOKEN, budgeted
    from tollgate.context import Budget

    with budgeted(PER_TOKEN, Budget("key", "master", 0.005, "total")) as gw:  # about 5 output tokens
        body = {
            "model": "demo/tollgate-demo",
            "messages": [{"role": "user", "content": LONG}],
            "temperature": 0,
            "stream": True,
        }
        url = gw.openai_base + "/chat/completions"
        cut = requests.post(url, json=body, headers=gw.auth(), timeout=10)
        assert cut.status_code == 200 and cut.headers["x-tollgate-cache"] == "miss"
        assert '"finish_reason":"length"' in cut.text  # cut at the budget
        time.sleep(0.1)
        stats = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(), timeout=10).json()
        assert stats["entries"] == 0 and stats["process"]["stores"] == 0
        # Without the budget the same request is a miss (the cut answer was not kept), then a hit.
        auth = gw.app.gateway.authenticator
        auth.master = dataclasses.replace(auth.master, budgets=())
        statuses = []
        for _ in range(2):
            resp = requests.post(url, json=body, headers=gw.auth(), timeout=10)
            statuses.append(resp.headers["x-tollgate-cache"])
            assert '"finish_reason":"stop"' in resp.text
            time.sleep(0.1)
        assert statuses == ["miss", "hit"]


def test_native_anthropic_passthrough_is_stored_and_replayed() -> None:
    from tests.fakes import anthropic_server
    from tests.fakes.harness import serve

    with serve(anthropic_server.make_app()) as fake:
        env = {"ANTHROPIC_API_KEY": "sk-ant-upstream", "ANTHROPIC_BASE_URL": fake.base_url}
        with run_gateway("", env) as gw:
            client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
            for stream_first in (False, True):
                prompt = _prompt()
                kwargs = {
                    "model": "anthropic/claude-haiku-4-5",
                    "max_tokens": 50,
                    "extra_body": {"temperature": 0},
                    "messages": [{"role": "user", "content": prompt}],
                }
                texts = []
                for stream in (stream_first, not stream_first, stream_first):
                    if stream:
                        with client.messages.stream(**kwargs) as events:  # type: ignore[arg-type]
                            texts.append(events.get_final_message().content[0].text)  # type: ignore[union-attr]
                    else:
                        texts.append(client.messages.create(**kwargs).content[0].text)  # type: ignore[call-overload, union-attr]
                    time.sleep(0.1)
                assert texts == [anthropic_server.ANSWER] * 3
                upstream = [r for r in fake.requests if r.path == "/v1/messages" and prompt.encode() in r.body]
                assert len(upstream) == 1


def test_cache_settings_per_team(fake_openai: FakeServer) -> None:
    # The cache is off for everyone but the team that turns it on; another team caches sampled requests too, for
    # one second only. Each field is the team's, else the model's, else the section's.
    config = """
cache:
  enabled: false
  teams:
    docs: {enabled: true}
    bots: {enabled: true, cache_nondeterministic: true, ttl_seconds: 1}
"""
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway(config, env) as running:
        keys = {}
        org = {"id": "acme", "name": "Acme"}
        assert requests.post(running.base_url + "/admin/orgs", json=org, headers=running.auth(), timeout=5).ok
        for team in ("docs", "bots", "other"):
            body = {"id": team, "name": team, "org_id": "acme"}
            assert requests.post(running.base_url + "/admin/teams", json=body, headers=running.auth(), timeout=5).ok
            made = requests.post(
                running.base_url + "/admin/keys",
                json={"name": team, "team_id": team},
                headers=running.auth(),
                timeout=5,
            )
            keys[team] = made.json()["key"]
        prompt = _prompt()
        assert "x-tollgate-cache" not in _chat(running, _body(prompt), keys["other"]).headers  # off for this team
        assert _chat(running, _body(prompt), keys["docs"]).headers["x-tollgate-cache"] == "miss"
        assert _chat(running, _body(prompt), keys["docs"]).headers["x-tollgate-cache"] == "hit"
        sampled = _body(_prompt(), temperature=0.9)
        assert _chat(running, sampled, keys["docs"]).headers["x-tollgate-cache"] == "skip"  # the section's rule
        assert _chat(running, sampled, keys["bots"]).headers["x-tollgate-cache"] == "miss"
        assert _chat(running, sampled, keys["bots"]).headers["x-tollgate-cache"] == "hit"
        time.sleep(1.2)  # the team's one-second TTL
        assert _chat(running, sampled, keys["bots"]).headers["x-tollgate-cache"] == "miss"
