"""The response cache's store: ``ResponseCacheStore`` (get, set with tags, invalidate by tag, stats) and its opener."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

ALL = "all"  # the tag every entry carries: invalidating it empties the cache


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    bytes: int | None  # None when the backend cannot tell cheaply (Redis)
    backend: str


class ResponseCacheStore(Protocol):
    """Opaque values under opaque keys, each with a TTL and tags. Failures are misses, never errors."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float, tags: Sequence[str]) -> None: ...

    async def invalidate(self, tag: str) -> int:
        """Delete every entry carrying ``tag`` (``"all"``: every entry); returns how many were deleted."""
        ...

    async def stats(self) -> StoreStats: ...


def open_cache_store(
    url: str | None, *, max_entries: int, max_bytes: int, key_prefix: str, timeout_seconds: float
) -> ResponseCacheStore:
    """``memory://`` (or unset): in-process LRU; ``redis://``/``rediss://``: shared by every replica."""
    if url is None or url.startswith("memory://") or url == "memory":
        from tollgate.state.cache_memory import MemoryCacheStore

        return MemoryCacheStore(max_entries=max_entries, max_bytes=max_bytes)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tollgate.state.cache_redis import RedisCacheStore

        return RedisCacheStore(url, key_prefix=key_prefix, timeout_seconds=timeout_seconds)
    raise ValueError(f"unsupported cache store URL scheme: {url.split(':', 1)[0]!r}")
