"""Cache hit and miss counts summed over replicas in one Redis hash (the real local Redis; skipped without it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from tests.contract.conftest import require_redis
from tollgate.state.cache_stats_redis import RedisCacheTally


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    url = require_redis()
    value = f"tollgate:test-cache-stats:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(url)
    try:
        client.delete(value + "stats")
    finally:
        client.close()


async def test_two_replicas_counts_add_up(prefix: str) -> None:
    url = require_redis()
    one = RedisCacheTally(url, key_prefix=prefix)
    two = RedisCacheTally(url, key_prefix=prefix)
    await one.start()
    await two.start()
    try:
        one.add("fast", "org:a", "misses")
        one.add("fast", "org:a", "stores")
        two.add("fast", "org:a", "hits")
        two.add("fast", "org:a", "semantic_hits")
        two.add("smart", "org:b", "misses")
        await two.flush()  # one's counts are still pending: read() sends the reader's own first
        seen = await one.read()
        assert seen["total"] == {"hits": 1, "misses": 2, "semantic_hits": 1, "stores": 1, "skips": 0}
        assert seen["by_model"] == {
            "fast": {"hits": 1, "misses": 1, "semantic_hits": 1, "stores": 1, "skips": 0},
            "smart": {"hits": 0, "misses": 1, "semantic_hits": 0, "stores": 0, "skips": 0},
        }
        assert list(seen["by_scope"]) == ["org:a", "org:b"]
        assert await two.read() == seen
    finally:
        await one.stop()
        await two.stop()


async def test_counts_survive_an_unreachable_redis() -> None:
    tally = RedisCacheTally("redis://127.0.0.1:1/0", timeout_seconds=0.05)
    tally.add("m", "org:a", "hits", 3)
    await tally.flush()
    await tally.flush()
    assert tally.errors == 2
    with pytest.raises(redis.exceptions.ConnectionError):
        await tally.read()
    tally.add("m", "org:a", "hits")
    assert tally._pending[("total", "", "hits")] == 4  # kept, to be sent once Redis answers
    await tally.stop()
