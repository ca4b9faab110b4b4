"""The ``ResponseCacheStore`` contract, against the in-process LRU and the real Redis alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.contract.conftest import require_redis
from tollgate.state.cache import ResponseCacheStore, open_cache_store
from tollgate.state.cache_memory import MemoryCacheStore
from tollgate.state.cache_redis import RedisCacheStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCacheStore]:
    if request.param == "memory":
        yield MemoryCacheStore(max_entries=100, max_bytes=1 << 20)
        return
    url = require_redis()
    prefix = f"tollgate:test-cache:{uuid.uuid4().hex}:"  # a fresh namespace: tests never see each other's keys
    redis_store = RedisCacheStore(url, key_prefix=prefix, timeout_seconds=1.0)
    try:
        yield redis_store
    finally:
        await redis_store.invalidate("all")
        await redis_store.aclose()


async def test_get_returns_what_was_set_and_misses_otherwise(store: ResponseCacheStore) -> None:
    assert await store.get("k1") is None
    await store.set("k1", b"answer one", 60, ["model:m", "org:a"])
    assert await store.get("k1") == b"answer one"
    await store.set("k1", b"answer two", 60, ["model:m", "org:a"])  # overwrite
    assert await store.get("k1") == b"answer two"
    assert (await store.stats()).entries == 1


async def test_entries_expire_after_their_ttl(store: ResponseCacheStore) -> None:
    await store.set("short", b"x", 0.15, ["org:a"])
    await store.set("long", b"y", 60, ["org:a"])
    assert await store.get("short") == b"x"
    await asyncio.sleep(0.3)
    assert await store.get("short") is None
    assert await store.get("long") == b"y"


async def test_invalidate_by_tag_deletes_only_the_tagged_entries(store: ResponseCacheStore) -> None:
    await store.set("a1", b"1", 60, ["model:m1", "org:a"])
    await store.set("a2", b"2", 60, ["model:m2", "org:a"])
    await store.set("b1", b"3", 60, ["model:m1", "org:b"])
    assert await store.invalidate("org:a") == 2
    assert await store.get("a1") is None and await store.get("a2") is None
    assert await store.get("b1") == b"3"
    assert await store.invalidate("org:a") == 0  # nothing left under the tag
    assert await store.invalidate("model:m1") == 1
    assert (await store.stats()).entries == 0


async def test_invalidate_all_empties_the_store(store: ResponseCacheStore) -> None:
    for i in range(5):
        await store.set(f"k{i}", b"v", 60, [f"org:o{i}"])
    assert await store.invalidate("all") == 5
    assert all([await store.get(f"k{i}") is None for i in range(5)])
    assert (await store.stats()).entries == 0


async def test_memory_store_evicts_least_recently_used_by_entries_and_bytes() -> None:
    lru = MemoryCacheStore(max_entries=3, max_bytes=100)
    for key in ("a", "b", "c"):
        await lru.set(key, b"x" * 10, 60, ["org:o"])
    assert await lru.get("a") == b"x" * 10  # a is now the most recently used
    await lru.set("d", b"x" * 10, 60, ["org:o"])
    assert await lru.get("b") is None  # the least recently used went
    assert {k for k in "acd" if await lru.get(k) is not None} == {"a", "c", "d"}
    await lru.set("big", b"y" * 90, 60, ["org:o"])  # over max_bytes: older entries go until it fits
    stats = await lru.stats()
    assert stats.bytes is not None and stats.bytes <= 100
    assert await lru.get("big") == b"y" * 90
    await lru.set("huge", b"z" * 101, 60, ["org:o"])  # larger than the whole cache: not stored
    assert await lru.get("huge") is None
    remaining = (await lru.stats()).entries
    assert await lru.invalidate("org:o") == remaining
    assert (await lru.stats()).bytes == 0


async def test_redis_store_shares_entries_between_instances() -> None:
    url = require_redis()
    prefix = f"tollgate:test-cache:{uuid.uuid4().hex}:"
    one, two = (RedisCacheStore(url, key_prefix=prefix) for _ in range(2))
    try:
        await one.set("shared", b"from replica one", 60, ["org:a"])
        assert await two.get("shared") == b"from replica one"
        assert await two.invalidate("org:a") == 1
        assert await one.get("shared") is None
    finally:
        await one.invalidate("all")
        await one.aclose()
        await two.aclose()


async def test_unreachable_redis_is_a_miss_and_a_dropped_write() -> None:
    down = RedisCacheStore("redis://127.0.0.1:1/0", timeout_seconds=0.2)
    try:
        assert await down.get("k") is None
        await down.set("k", b"v", 60, ["org:a"])
        assert down.errors == 2
    finally:
        await down.aclose()


def test_the_url_scheme_picks_the_backend() -> None:
    assert isinstance(
        open_cache_store(None, max_entries=1, max_bytes=1, key_prefix="p:", timeout_seconds=1), MemoryCacheStore
    )
    assert isinstance(
        open_cache_store("memory://", max_entries=1, max_bytes=1, key_prefix="p:", timeout_seconds=1), MemoryCacheStore
    )
    with pytest.raises(ValueError, match="unsupported"):
        open_cache_store("sqlite:///x.db", max_entries=1, max_bytes=1, key_prefix="p:", timeout_seconds=1)
