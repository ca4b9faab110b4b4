"""Redis ``ResponseCacheStore``: entries shared by every replica, expiring in Redis, with tag sets for invalidation.

Layout under ``key_prefix`` (default ``tollgate:cache:``): ``e:<key>`` holds the value (``SET ... PX ttl``);
``t:<tag>`` is a set of the entry keys carrying that tag, expiring with its longest-lived entry. Invalidating
a tag deletes its members and the set; ``all`` scans ``e:*``. A tag set may name entries that already
expired: deleting them is harmless. Redis unreachable: reads are misses and writes are dropped (counted in
``errors``), so the gateway keeps answering from the providers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tollgate.state.cache import ALL, StoreStats

log = logging.getLogger("tollgate.cache")


class RedisCacheStore:
    def __init__(self, url: str, *, key_prefix: str = "tollgate:cache:", timeout_seconds: float = 0.2) -> None:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=max(2.0, timeout_seconds),
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = redis.Redis.from_pool(pool)
        self._prefix = key_prefix
        self.errors = 0  # operations that failed (Redis unreachable): answered as misses or dropped

    def _failed(self, op: str, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("response cache: Redis %s failed (%s); serving without the cache", op, type(exc).__name__)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + "e:" + key)
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float, tags: Sequence[str]) -> None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        entry = self._prefix + "e:" + key
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(entry, value, px=ttl_ms)
                for tag in tags:
                    if tag == ALL:
                        continue
                    tag_key = self._prefix + "t:" + tag
                    pipe.sadd(tag_key, entry)
                    pipe.pexpire(tag_key, ttl_ms, gt=True)  # only ever lengthened
                    pipe.pexpire(tag_key, ttl_ms, nx=True)  # a new set gets one
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("set", exc)

    async def invalidate(self, tag: str) -> int:
        if tag == ALL:
            deleted = 0
            async for batch in self._scan_batches(self._prefix + "*"):
                deleted += sum(1 for k in batch if k.startswith((self._prefix + "e:").encode()))
                await self._redis.delete(*batch)
            return deleted
        tag_key = self._prefix + "t:" + tag
        members = await self._redis.smembers(tag_key)
        keys = list(members)
        deleted = int(await self._redis.delete(*keys)) if keys else 0
        await self._redis.delete(tag_key)
        return deleted

    async def stats(self) -> StoreStats:
        entries = 0
        async for batch in self._scan_batches(self._prefix + "e:*"):
            entries += len(batch)
        return StoreStats(entries=entries, bytes=None, backend="redis")

    async def _scan_batches(self, pattern: str) -> AsyncIterator[list[bytes]]:
        cursor = 0
        while True:
            cursor, keys = await self._redis.scan(cursor, match=pattern, count=500)
            if keys:
                yield [k if isinstance(k, bytes) else k.encode() for k in keys]
            if cursor == 0:
                return

    async def aclose(self) -> None:
        await self._redis.aclose()
