"""Sharing the semantic index between replicas through a Redis stream (our Redis has no vector-search module).

The answers themselves live in the shared exact-cache store (``RedisCacheStore``): a semantic entry's key *is*
the exact-cache key of the request that produced the answer. What replicas need in addition is the vectors: each
one is appended to the stream of its embedding space, ``<prefix>semantic:<space>:log`` (one stream per model and
dimension, so replicas configured with different embedders never mix vectors), as ``{p: partition, k: key,
v: float32 bytes, e: expiry (epoch seconds), t: the embedded text}``, trimmed to about ``max_entries``. Every
replica reads the stream from the start when it opens (skipping expired entries), then follows it with a
blocking ``XREAD``, adding what others (and itself) wrote to its local ``VectorIndex``. An entry whose answer
was invalidated or evicted in Redis is found in the index but not in the store: the caller drops it from the
index then, so invalidation needs no message of its own.

A replica whose embedder is a provider learns a space from its first vector; ``shared_spaces`` lists those already
in Redis when it starts, so it can load them at once.

Redis unreachable: publishing is dropped and the follower retries every second; lookups still use the local index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
import redis.asyncio as redis
from redis.exceptions import RedisError

from tollgate.state.semantic_index import Vector, VectorIndex

log = logging.getLogger("tollgate.cache")


async def shared_spaces(url: str, key_prefix: str, timeout_seconds: float) -> list[tuple[str, int]]:
    """The embedding spaces that have a stream under ``key_prefix`` (space ids end with their dimension)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_seconds)
    head, tail = key_prefix + "semantic:", ":log"
    found: list[tuple[str, int]] = []
    try:
        async for raw in client.scan_iter(match=head + "*" + tail, count=500):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            space = key[len(head) : -len(tail)]
            dim = space.rsplit(".", 1)[-1]
            if dim.isdigit() and int(dim) > 0:
                found.append((space, int(dim)))
    except (RedisError, OSError) as exc:
        log.warning("semantic cache: listing the shared embedding spaces failed (%s)", type(exc).__name__)
    finally:
        await client.aclose()
    return sorted(found)


class RedisVectorLog:
    def __init__(
        self,
        url: str,
        index: VectorIndex,
        *,
        key_prefix: str = "tollgate:cache:",
        space: str = "default",
        max_entries: int = 100_000,
        timeout_seconds: float = 0.2,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=timeout_seconds)
        self._index = index
        self.stream = f"{key_prefix}semantic:{space}:log"
        self._maxlen = max_entries
        self._timeout = timeout_seconds
        self._block_ms = block_ms
        self._last_id = b"0-0"
        self._task: asyncio.Task[None] | None = None
        self.errors = 0
        self.applied = 0  # stream entries added to the local index (its own included)

    async def publish(self, partition: str, key: str, vector: Vector, expires_at: float, text: str) -> None:
        fields: dict[bytes | bytearray | memoryview[int] | str | int | float, Any] = {
            "p": partition,
            "k": key,
            "v": np.asarray(vector, dtype="<f4").tobytes(),
            "e": repr(float(expires_at)),
            "t": text,
        }
        try:
            await asyncio.wait_for(
                self._redis.xadd(self.stream, fields, maxlen=self._maxlen, approximate=True), self._timeout
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("publish", exc)

    def _failed(self, op: str, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("semantic cache: Redis %s failed (%s); entries may not be shared", op, type(exc).__name__)

    def _apply(self, entries: Any) -> None:
        for entry_id, fields in entries:
            self._last_id = entry_id
            try:
                vector = np.frombuffer(fields[b"v"], dtype="<f4").astype(np.float32)
                partition = fields[b"p"].decode()
                key = fields[b"k"].decode()
                expires_at = float(fields[b"e"])
                text = fields.get(b"t", b"").decode()
            except (KeyError, ValueError, UnicodeDecodeError):
                continue
            if vector.shape == (self._index.dim,):
                self._index.add(partition, key, vector, expires_at, text)
                self.applied += 1

    async def catch_up(self) -> None:
        """Read the stream from where this replica stopped to its end (the whole stream at first)."""
        while True:
            start = b"(" + self._last_id if self._last_id != b"0-0" else b"-"
            batch = await self._redis.xrange(self.stream, min=start, max="+", count=1000)
            if not batch:
                return
            self._apply(batch)

    async def _follow(self) -> None:
        while True:
            try:
                await self.catch_up()
                while True:
                    answer = await self._redis.xread({self.stream: self._last_id}, count=1000, block=self._block_ms)
                    for stream_entries in answer or []:
                        self._apply(stream_entries[1])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._failed("read", exc)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Load what the stream holds, then follow it in the background."""
        try:
            await asyncio.wait_for(self.catch_up(), 5.0)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("read", exc)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    def start_soon(self) -> None:
        """``start`` in the background (for a space first met while serving: no request waits for the stream)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def clear(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self.stream)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._task
            self._task = None
        await self._redis.aclose()
