"""Replicas share the semantic index through a Redis stream (the real local Redis; skipped outside CI without it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis

from tests.contract.conftest import require_redis
from tollgate.state.semantic_index import VectorIndex
from tollgate.state.semantic_redis import RedisVectorLog


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    url = require_redis()
    value = f"tollgate:test-semantic:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=value + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


async def _until(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the other replica never saw the entry"
        await asyncio.sleep(0.02)


async def test_an_entry_written_by_one_replica_reaches_the_others(prefix: str) -> None:
    url = require_redis()
    a_index, b_index = VectorIndex(), VectorIndex()
    a = RedisVectorLog(url, a_index, key_prefix=prefix, block_ms=100)
    b = RedisVectorLog(url, b_index, key_prefix=prefix, block_ms=100)
    await a.start()
    await b.start()
    try:
        v = _vec(1)
        a_index.add("part", "key-1", v, time.time() + 60, "can dogs eat grapes?")
        await a.publish("part", "key-1", v, time.time() + 60, "can dogs eat grapes?")
        await _until(lambda: "key-1" in b_index)
        found = b_index.search("part", v, 0.99)
        assert [(m.key, m.text) for m in found] == [("key-1", "can dogs eat grapes?")]
        assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert b_index.search("other-part", v, 0.5) == []  # partitions travel with the entry

        # A replica that starts later loads what the stream holds, without expired entries.
        await a.publish("part", "key-old", _vec(2), time.time() - 1, "expired")
        c_index = VectorIndex()
        c = RedisVectorLog(url, c_index, key_prefix=prefix, block_ms=100)
        await c.start()
        try:
            assert "key-1" in c_index and "key-old" not in c_index and c.applied == 2
        finally:
            await c.aclose()
        assert a.errors == b.errors == 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unreachable_redis_is_counted_not_raised() -> None:
    index = VectorIndex()
    log = RedisVectorLog("redis://127.0.0.1:1/0", index, timeout_seconds=0.05)
    await log.publish("p", "k", _vec(3), time.time() + 60, "text")
    assert log.errors == 1
    await log.start()  # logs, and keeps retrying in the background
    assert log.errors >= 2
    await log.aclose()
