"""The response cache's hit and miss counts summed over every replica, in one Redis hash.

Each replica counts in memory (a dict increment on the request path, no I/O) and adds what it counted to the
hash ``<prefix>stats`` every ``interval`` seconds, in one pipelined ``HINCRBY`` per counter, and once more
when it stops. Fields are ``<dimension>\\t<value>\\t<counter>``: dimension ``total`` (value empty), ``model``
(the requested model) or ``scope`` (the tenant scope id); counters ``hits``, ``misses``, ``semantic_hits``,
``stores``, ``skips``. Reading (``GET /admin/cache/stats``) first sends this replica's pending counts, so what
it just served is included.

Redis unreachable: the counts stay pending (they are sums, so they do not grow with traffic, only with the
models and scopes seen) and go out at the next flush that succeeds; ``errors`` counts the failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollgate.state.redis_bus import fail_fast_client
from tollgate.types import JSONObject

log = logging.getLogger("tollgate.cache")

COUNTERS = ("hits", "misses", "semantic_hits", "stores", "skips")
Field = tuple[str, str, str]  # (dimension, value, counter)


class RedisCacheTally:
    def __init__(
        self, url: str, *, key_prefix: str = "tollgate:cache:", timeout_seconds: float = 0.2, interval: float = 1.0
    ) -> None:
        self._redis: redis.Redis = fail_fast_client(url, max(timeout_seconds, 0.5))
        self.key = key_prefix + "stats"
        self._interval = interval
        self._pending: dict[Field, int] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    def add(self, model: str, scope_id: str, counter: str, n: int = 1) -> None:
        """Count ``n`` of ``counter`` for the total, the model and the scope (sent at the next flush)."""
        pending = self._pending
        for field in (("total", "", counter), ("model", model, counter), ("scope", scope_id, counter)):
            pending[field] = pending.get(field, 0) + n

    async def flush(self) -> None:
        """Send the pending counts; on failure they stay pending for the next flush."""
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (dimension, value, counter), n in batch.items():
                        pipe.hincrby(self.key, f"{dimension}\t{value}\t{counter}", n)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                for field, n in batch.items():  # put back: sums, so merging keeps them exact
                    self._pending[field] = self._pending.get(field, 0) + n
                self.errors += 1
                if self.errors == 1 or self.errors % 100 == 0:
                    log.warning("cache stats: Redis flush failed (%s); counts kept for later", type(exc).__name__)

    async def read(self) -> JSONObject:
        """Every replica's counts: ``{"total": {...}, "by_model": {m: {...}}, "by_scope": {s: {...}}}``."""
        await self.flush()
        raw = await self._redis.hgetall(self.key)
        total: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        by: dict[str, dict[str, dict[str, int]]] = {"model": {}, "scope": {}}
        for key, value in raw.items():
            parts = (key.decode() if isinstance(key, bytes) else str(key)).split("\t")
            if len(parts) != 3 or parts[2] not in COUNTERS:
                continue
            dimension, name, counter = parts
            if dimension == "total":
                total[counter] = int(value)
            elif dimension in by:
                by[dimension].setdefault(name, dict.fromkeys(COUNTERS, 0))[counter] = int(value)
        return {
            "total": dict(total),
            "by_model": {k: dict(v) for k, v in sorted(by["model"].items())},
            "by_scope": {k: dict(v) for k, v in sorted(by["scope"].items())},
        }

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cache-stats-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        await self._redis.aclose()
