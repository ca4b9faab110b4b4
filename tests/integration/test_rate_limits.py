"""Rate limits through a real gateway: concurrent bursts get exactly the limit, tokens settle from streams."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import aiohttp
import orjson
import redis

from tests.contract.conftest import require_redis
from tests.gateway import RunningGateway, run_gateway
from tollgate.context import Limit
from tollgate.policies.rate_limit import RateLimitPolicy
from tollgate.state.counters import CounterStore
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.state.counters_redis import RedisCounterStore

MODEL = "demo/tollgate-demo"
CHAT = "/v1/chat/completions"


@contextmanager
def limited_gateway(store: CounterStore, *limits: Limit) -> Iterator[RunningGateway]:
    """A gateway whose master key carries ``limits``, with the rate-limit policy installed on ``store``.

    Until tenancy fills ``Principal.limits`` from key records, the master principal is the caller with limits.
    """
    with run_gateway("", {}) as gw:
        gateway = gw.app.gateway
        policy = RateLimitPolicy(store)
        gateway.pipelines = gateway.pipelines.with_default(admit=(*gateway.pipeline.admit, policy))
        gateway.pipelines = gateway.pipelines.with_default(finalize=(*gateway.pipeline.finalize, policy))
        gateway.authenticator.master = dataclasses.replace(gateway.authenticator.master, limits=limits)
        yield gw


def body(**extra: object) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], **extra})


async def hammer(targets: list[RunningGateway], n: int) -> list[tuple[int, dict[str, str], bytes]]:
    async def one(session: aiohttp.ClientSession, gw: RunningGateway) -> tuple[int, dict[str, str], bytes]:
        async with session.post(gw.base_url + CHAT, data=body(max_tokens=16), headers=gw.auth()) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return await asyncio.gather(*(one(session, targets[i % len(targets)]) for i in range(n)))


def assert_exactly(results: list[tuple[int, dict[str, str], bytes]], allowed: int, limit: int) -> None:
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * allowed + [429] * (len(results) - allowed)
    for status, headers, raw in results:
        assert headers["x-ratelimit-limit-requests"] == str(limit)
        assert int(headers["x-ratelimit-remaining-requests"]) >= 0
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        if status == 429:
            error = orjson.loads(raw)["error"]
            assert error["type"] == "rate_limit_error"
            assert error["code"] == "rate_limit_exceeded"
            assert f"this API key: {limit} requests per minute" in error["message"]
            assert int(headers["retry-after"]) >= 1
            assert headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_concurrent_burst_gets_exactly_the_limit() -> None:
    with limited_gateway(MemoryCounterStore(), Limit("key", "master", rpm=10)) as gw:
        assert_exactly(await hammer([gw], 30), allowed=10, limit=10)


async def test_stream_usage_settles_the_token_reservation() -> None:
    store = MemoryCounterStore()
    with limited_gateway(store, Limit("key", "master", tpm=100_000, max_parallel=4)) as gw:
        async with aiohttp.ClientSession() as session:
            request = body(max_tokens=2000, stream=True, stream_options={"include_usage": True})
            async with session.post(gw.base_url + CHAT, data=request, headers=gw.auth()) as resp:
                assert resp.status == 200
                # While the stream was admitted, its estimate (prompt + 2000 output tokens) was reserved.
                assert int(resp.headers["x-ratelimit-remaining-tokens"]) <= 100_000 - 2000
                assert resp.headers["x-ratelimit-reset-tokens"] == "1m0s"
                raw = await resp.read()
        events = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ") and line != b"data: [DONE]"]
        usage = orjson.loads(events[-1])["usage"]
        assert usage["total_tokens"] < 2000
        # FINALIZE settles in the background, right after the response ended.
        for _ in range(500):
            if store.level("tpm:key:master") == usage["total_tokens"]:
                break
            await asyncio.sleep(0.01)
        assert store.level("tpm:key:master") == usage["total_tokens"]
        assert store.level("max_parallel:key:master") == 0


@contextmanager
def redis_store(url: str, prefix: str) -> Iterator[RedisCounterStore]:
    # A generous timeout: these tests are about one shared limit, not about a slow Redis (a loaded CI machine can
    # stall a round trip past the default 0.5 s, which fail_open=False would turn into a 503).
    store = RedisCounterStore(url, key_prefix=prefix, fail_open=False, timeout_seconds=5.0)
    try:
        yield store
    finally:
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def test_two_replicas_on_redis_enforce_one_global_limit() -> None:
    url = require_redis()
    prefix = f"tollgate:test:{uuid.uuid4().hex}:"
    limit = Limit("key", "master", rpm=10)
    with ExitStack() as stack:
        # Each replica has its own Redis client, used from its own event loop and thread, as two processes would.
        replicas = [
            stack.enter_context(limited_gateway(stack.enter_context(redis_store(url, prefix)), limit)) for _ in range(2)
        ]
        results = await hammer(replicas, 30)
    assert_exactly(results, allowed=10, limit=10)
