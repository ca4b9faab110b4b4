"""In-process ``ResponseCacheStore``: an LRU bounded by entries and bytes, with per-entry expiry and a tag index."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from tollgate.state.cache import ALL, StoreStats


class MemoryCacheStore:
    """Least recently used entries go first when either bound is reached; expired entries are dropped on read."""

    def __init__(self, *, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float, tuple[str, ...]]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_seconds: float, tags: Sequence[str]) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        clean = tuple(t for t in tags if t != ALL)
        self._entries[key] = (value, self._clock() + ttl_seconds, clean)
        self._bytes += len(value)
        for tag in clean:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def invalidate(self, tag: str) -> int:
        if tag == ALL:
            count = len(self._entries)
            self._entries.clear()
            self._tags.clear()
            self._bytes = 0
            return count
        keys = list(self._tags.get(tag, ()))
        for key in keys:
            self._drop(key)
        return len(keys)

    async def stats(self) -> StoreStats:
        return StoreStats(entries=len(self._entries), bytes=self._bytes, backend="memory")

    def _drop(self, key: str) -> None:
        value, _, tags = self._entries.pop(key)
        self._bytes -= len(value)
        for tag in tags:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]
