"""USD budgets through a real gateway: concurrent bursts never overshoot (in-process, Redis, Redis down),
streams are cut cleanly at the budget for the official SDKs, refusals name the scope, alerts are signed."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import anthropic
import openai
import orjson
import pytest
import redis
from aiohttp import web

from tests.contract.conftest import require_redis
from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, free_port
from tests.gateway import RunningGateway, run_gateway
from tollgate.context import Budget
from tollgate.policies.budget import BudgetPolicy
from tollgate.policies.ledger import LedgerPolicy
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.postgres import PostgresDatabase

MODEL = "demo/tollgate-demo"
CHAT = "/v1/chat/completions"
# Every demo request costs exactly one cent: reservation == cost, so "N requests' worth" is exact.
PER_REQUEST = """
pricing:
  models:
    demo/tollgate-demo: {input: 0, output: 0, per_request: 0.01}
"""
# One output token costs $0.001 (1,000 micro-dollars), input is free: budgets in tokens are easy to read.
PER_TOKEN = """
pricing:
  models:
    demo/tollgate-demo: {input: 0, output: 1000}
    openai/gpt-4o-mini-scenario-slow_stream: {input: 0, output: 1000}
"""
LONG = " ".join(f"word{i}" for i in range(40))  # the demo echoes it: about 60 output tokens


def policy_of(gw: RunningGateway) -> BudgetPolicy:
    found = [p for p in gw.app.gateway.pipeline.stream_filters if isinstance(p, BudgetPolicy)]
    assert found, "the assembled gateway has a budget policy"
    return found[0]


@contextmanager
def budgeted(
    yaml_text: str, *budgets: Budget, env: Mapping[str, str] | None = None, data_dir: str | None = None
) -> Iterator[RunningGateway]:
    """The assembled gateway, whose master key carries ``budgets`` (as tenancy would resolve them for a key)."""
    with run_gateway(yaml_text, env or {}, data_dir=data_dir) as gw:
        auth = gw.app.gateway.authenticator
        auth.master = dataclasses.replace(auth.master, budgets=budgets)
        yield gw


def chat(content: str = "hello", **extra: object) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}], **extra})


async def hammer(targets: list[RunningGateway], n: int) -> list[tuple[int, bytes]]:
    async def one(session: aiohttp.ClientSession, gw: RunningGateway) -> tuple[int, bytes]:
        async with session.post(gw.base_url + CHAT, data=chat(max_tokens=16), headers=gw.auth()) as resp:
            return resp.status, await resp.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await asyncio.gather(*(one(session, targets[i % len(targets)]) for i in range(n)))


def assert_exactly(results: list[tuple[int, bytes]], allowed: int, message: str) -> None:
    assert sorted(s for s, _ in results) == [200] * allowed + [402] * (len(results) - allowed)
    for status, raw in results:
        if status == 402:
            error = orjson.loads(raw)["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
            assert error["message"] == message


async def wait_for(check: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def memory_level(gw: RunningGateway, counter: str) -> int:
    store = policy_of(gw).store
    assert isinstance(store, MemoryCounterStore)
    return store.level(counter)


USED_UP = "API key budget of $0.10 in total is used up: $0.10 spent."


async def test_a_concurrent_burst_gets_exactly_the_budget_in_process() -> None:
    with budgeted(PER_REQUEST, Budget("key", "master", 0.10, "total")) as gw:
        results = await hammer([gw], 30)
        assert_exactly(results, allowed=10, message=USED_UP)
        await wait_for(lambda: memory_level(gw, "budget:key:master:total") == 100_000, "settlement")
        await asyncio.sleep(0.1)
        assert memory_level(gw, "budget:key:master:total") == 100_000  # spent == budget, never more


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    prefix = f"tollgate:test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def test_two_replicas_on_redis_share_one_budget() -> None:
    url = require_redis()
    with ExitStack() as stack:
        prefix = stack.enter_context(redis_prefix(url))
        # A generous Redis timeout: the test is about one shared budget, not a slow Redis (fail_open: false would
        # turn a round trip stalled past the default 0.5 s on a loaded machine into a 503).
        store = f"counter_url: '{url}', key_prefix: '{prefix}', fail_open: false, redis_timeout_seconds: 5"
        config = PER_REQUEST + f"rate_limits: {{{store}}}\n"
        budget = Budget("team", "t-redis", 0.10, "monthly")
        replicas = [stack.enter_context(budgeted(config, budget)) for _ in range(2)]
        results = await hammer(replicas, 30)
        assert_exactly(results, 10, "Team budget of $0.10 for this month is used up: $0.10 spent.")
        client = redis.Redis.from_url(url)
        try:
            month = time.strftime("%Y-%m", time.gmtime())
            await wait_for(
                lambda: client.hget(f"{prefix}budget:team:t-redis:{month}:amt", "#") == b"100000", "settlement"
            )
        finally:
            client.close()


async def test_redis_down_fails_open_to_exact_local_budgets(caplog: pytest.LogCaptureFixture) -> None:
    config = PER_REQUEST + "rate_limits: {counter_url: 'redis://127.0.0.1:1/0', redis_timeout_seconds: 0.2}\n"
    with budgeted(config, Budget("key", "master", 0.10, "total")) as gw:
        assert_exactly(await hammer([gw], 30), allowed=10, message=USED_UP)
    assert any("unreachable" in r.getMessage() for r in caplog.records)


async def test_openai_sdk_stream_is_cut_at_the_budget() -> None:
    with budgeted(PER_TOKEN, Budget("key", "master", 0.02, "daily")) as gw:  # 20 output tokens
        client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": LONG}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        async for chunk in stream:  # ends normally: the stream closed with [DONE]
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
        assert finish == "length"
        assert usage is not None and 0 < usage.completion_tokens <= 20
        assert text and len(text.encode()) <= 80  # about four bytes a token
        day = time.strftime("%Y-%m-%d", time.gmtime())
        await wait_for(lambda: memory_level(gw, f"budget:key:master:{day}") == usage.completion_tokens * 1000, "charge")
        # The budget is (nearly) gone: the next stream is refused, or cut almost at once.
        await client.close()


async def test_anthropic_sdk_stream_is_cut_at_the_budget() -> None:
    with budgeted(PER_TOKEN, Budget("team", "t1", 0.02, "monthly")) as gw:
        client = anthropic.AsyncAnthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
        async with client.messages.stream(
            model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": LONG}]
        ) as stream:
            kinds = [event.type async for event in stream]
            message = await stream.get_final_message()
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        assert "content_block_stop" in kinds and "message_delta" in kinds
        assert message.stop_reason == "max_tokens"
        assert 0 < message.usage.output_tokens <= 20
        assert message.content and message.content[0].type == "text" and message.content[0].text
        await client.close()


async def test_a_cut_stream_closes_the_upstream(fake_openai: FakeServer) -> None:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    before = len(openai_server.STREAM_OUTCOMES)
    with budgeted(PER_TOKEN, Budget("key", "master", 0.005, "total"), env=env) as gw:  # 5 output tokens
        client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        started = time.monotonic()
        stream = await client.chat.completions.create(
            model="openai/gpt-4o-mini-scenario-slow_stream", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
        assert finishes[-1] == "length"
        assert time.monotonic() - started < 3  # the full slow stream takes over 6 s
        await wait_for(lambda: len(openai_server.STREAM_OUTCOMES) > before, "the upstream to end")
        assert openai_server.STREAM_OUTCOMES[-1] == "aborted"
        await client.close()


async def test_team_budget_refusal_in_both_client_formats(tmp_path: Path) -> None:
    with run_gateway(PER_REQUEST, {}, data_dir=str(tmp_path)) as gw:
        async with aiohttp.ClientSession() as session:
            for path, body in (
                ("/admin/orgs", {"id": "acme", "name": "Acme"}),
                (
                    "/admin/teams",
                    {"id": "research", "org_id": "acme", "name": "R", "budget": {"limit_usd": 0.02}},
                ),
                ("/admin/users", {"id": "alice", "team_id": "research", "email": "a@acme.test"}),
            ):
                async with session.post(gw.base_url + path, json=body, headers=gw.auth()) as resp:
                    assert resp.status == 201, await resp.text()
            async with session.post(
                gw.base_url + "/admin/keys", json={"name": "a", "user_id": "alice"}, headers=gw.auth()
            ) as resp:
                key = (await resp.json())["key"]
        oa = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
        for _ in range(2):
            await oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.APIStatusError) as refused:
            await oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 402
        message = "Team budget of $0.02 for this month is used up: $0.02 spent."
        assert refused.value.body == {
            "message": message,
            "type": "insufficient_quota",
            "param": None,
            "code": "budget_exceeded",
        }
        assert key not in str(refused.value.body)
        an = anthropic.AsyncAnthropic(base_url=gw.base_url, api_key=key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as refused_a:
            await an.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
        assert refused_a.value.status_code == 402
        assert refused_a.value.body == {"type": "error", "error": {"type": "billing_error", "message": message}}
        await oa.close()
        await an.close()


@asynccontextmanager
async def receiver(secret: str, fail_first: int) -> AsyncIterator[tuple[str, list[dict[str, object]], list[int]]]:
    """A webhook receiver on loopback that checks signatures; it answers 500 to the first ``fail_first`` calls."""
    received: list[dict[str, object]] = []
    attempts: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        attempts.append(1)
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Tollgate-Signature", ""), expected):
            return web.Response(status=401)
        if len(attempts) <= fail_first:
            return web.Response(status=500)
        received.append(orjson.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received, attempts
    finally:
        await runner.cleanup()


async def test_threshold_alerts_reach_a_signed_webhook_once_each() -> None:
    async with receiver("hook-secret", fail_first=1) as (url, received, attempts):
        config = PER_REQUEST + (
            "budgets:\n  alerts:\n"
            f"    webhook_url: {url}\n"
            "    webhook_secret: ${HOOK_SECRET}\n"
            "    webhook_backoff_seconds: 0.05\n"
            "    burn_rate_factor: null\n"
        )
        with budgeted(config, Budget("key", "master", 0.10, "monthly"), env={"HOOK_SECRET": "hook-secret"}) as gw:
            async with aiohttp.ClientSession() as session:
                for _ in range(12):  # 10 answered, 2 refused
                    async with session.post(gw.base_url + CHAT, data=chat(), headers=gw.auth()) as resp:
                        await resp.read()
                    await asyncio.sleep(0.02)  # let each settlement land, so thresholds are crossed one by one
                await wait_for(lambda: len(received) == 3, "three alerts")
                await asyncio.sleep(0.3)
    assert [r["threshold"] for r in received] == [0.5, 0.8, 1.0]
    assert [r["spent"] for r in received] == [0.05, 0.08, 0.1]
    assert all(r["type"] == "budget.threshold" and r["limit"] == 0.1 for r in received)
    assert {(r["scope"], r["id"], r["period"]) for r in received} == {("key", "master", "monthly")}
    assert len(attempts) == 4  # the first delivery failed once and was retried


async def test_budgets_settle_while_the_ledger_database_is_down(tmp_path: Path) -> None:
    """The ledger spools (PostgreSQL unreachable); budgets still settle to the priced cost."""
    dead = PostgresDatabase(
        f"postgresql://tollgate:x@127.0.0.1:{free_port()}/tollgate", LEDGER_PG_MIGRATIONS, connect_timeout=0.5
    )
    with budgeted(PER_TOKEN, Budget("key", "master", 1.0, "total")) as gw:
        gateway = gw.app.gateway
        ledger = LedgerPolicy(PostgresLedgerStore(dead), policy_of(gw).prices, tmp_path / "spool.jsonl", retry_max=0.2)
        finalize = tuple(ledger if isinstance(p, LedgerPolicy) else p for p in gateway.pipeline.finalize)
        gateway.pipelines = gateway.pipelines.with_default(finalize=finalize)
        await ledger.start()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(gw.base_url + CHAT, data=chat(max_tokens=50), headers=gw.auth()) as resp,
            ):
                answer = orjson.loads(await resp.read())
            tokens = answer["usage"]["completion_tokens"]
            await wait_for(lambda: memory_level(gw, "budget:key:master:total") == tokens * 1000, "settlement")
            await wait_for(lambda: ledger.spool.count() == 1, "the row to be spooled", seconds=10)
        finally:
            await ledger.stop()
