"""In-process ``CounterStore``: exact sliding logs in plain dicts, for one gateway process.

Exact under asyncio concurrency because ``reserve`` and ``settle`` never await: each runs to completion
on the event loop before any other request's code can look at the counters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from tollgate.state.counters import Charge, Decision, Level, Settlement

# Past this many entries, a refusal's retry-after is the full drain time (an upper bound) instead of an
# exact walk, so an over-limit caller cannot make every refusal cost O(limit).
RETRY_WALK = 256
# How often idle counters are swept, so keys nobody uses any more do not stay in memory.
_SWEEP_MS = 60_000


class _Entry:
    __slots__ = ("amount", "rid", "ts")

    def __init__(self, rid: str, ts: int, amount: int) -> None:
        self.rid = rid
        self.ts = ts
        self.amount = amount


class _Counter:
    """One counter: a time-ordered log of entries (rolling) or just a total (cumulative)."""

    __slots__ = ("dead", "entries", "expires_at", "live", "total", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.entries: deque[_Entry] = deque()
        self.live: dict[str, _Entry] = {}
        self.total = 0
        # Entries settled to 0 stay in the deque (removing from its middle is O(n)) until they reach its
        # left end or the deque is compacted.
        self.dead = 0
        self.expires_at = 0  # cumulative counters with a ttl

    def expire(self, now: int) -> None:
        cutoff = now - self.window_ms
        entries = self.entries
        while entries and entries[0].ts <= cutoff:
            entry = entries.popleft()
            if self.live.get(entry.rid) is entry:
                del self.live[entry.rid]
                self.total -= entry.amount
            else:
                self.dead -= 1

    def append(self, rid: str, now: int, amount: int) -> None:
        entry = _Entry(rid, now, amount)
        self.entries.append(entry)
        self.live[rid] = entry
        self.total += amount

    def remove(self, entry: _Entry) -> None:
        del self.live[entry.rid]
        self.total -= entry.amount
        self.dead += 1
        if self.dead > 64 and self.dead > len(self.live):
            self.entries = deque(e for e in self.entries if self.live.get(e.rid) is e)
            self.dead = 0

    def reset_ms(self, now: int) -> int:
        for entry in reversed(self.entries):
            if self.live.get(entry.rid) is entry:
                return max(0, entry.ts + self.window_ms - now)
        return 0

    def retry_ms(self, now: int, amount: int, limit: int) -> int:
        if amount > limit:
            return self.window_ms  # never fits; the caller is told to wait a full window
        need = self.total + amount - limit
        freed = 0
        for walked, entry in enumerate(self.entries):
            if walked >= RETRY_WALK:
                break
            if self.live.get(entry.rid) is not entry:
                continue
            freed += entry.amount
            if freed >= need:
                return max(0, entry.ts + self.window_ms - now)
        return self.reset_ms(now)


class MemoryCounterStore:
    """Counters of this process. ``clock`` returns seconds (monotonic by default; tests inject one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, _Counter] = {}
        self._next_sweep = 0

    def _now(self) -> int:
        return round(self._clock() * 1000)

    def _counter(self, key: str, window_ms: int, now: int) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter(window_ms)
        elif window_ms > 0:
            counter.expire(now)
        elif counter.expires_at and counter.expires_at <= now:
            counter.total = 0
            counter.expires_at = 0
        return counter

    async def reserve(self, rid: str, charges: Sequence[Charge]) -> Decision:
        now = self._now()
        if now >= self._next_sweep:
            self._sweep(now)
        counters = [self._counter(c.key, c.window_ms, now) for c in charges]
        refused = -1
        retry = 0
        for i, (charge, counter) in enumerate(zip(charges, counters, strict=True)):
            if counter.total + charge.amount > charge.limit:
                if refused < 0:
                    refused = i
                if charge.window_ms > 0:
                    retry = max(retry, counter.retry_ms(now, charge.amount, charge.limit))
        if refused >= 0:
            levels = tuple(Level(c.total, self._reset(c, now)) for c in counters)
            return Decision(False, levels, refused, retry)
        for charge, counter in zip(charges, counters, strict=True):
            if charge.amount == 0:
                continue
            if charge.window_ms > 0:
                counter.append(rid, now, charge.amount)
            else:
                counter.total += charge.amount
                if charge.ttl_ms:
                    counter.expires_at = now + charge.ttl_ms
        return Decision(True, tuple(Level(c.total, self._reset(c, now)) for c in counters))

    async def settle(self, rid: str, settlements: Sequence[Settlement]) -> None:
        now = self._now()
        for s in settlements:
            counter = self._counter(s.key, s.window_ms, now)
            if s.window_ms == 0:
                counter.total += s.actual - s.reserved
                if s.ttl_ms:
                    counter.expires_at = now + s.ttl_ms
                continue
            entry = counter.live.get(rid)  # expire() above already dropped it if it left the window
            if entry is not None:
                if s.actual > 0:
                    counter.total += s.actual - entry.amount
                    entry.amount = s.actual
                else:
                    counter.remove(entry)
            elif s.actual > s.reserved:
                counter.append(rid, now, s.actual - s.reserved)

    async def settle_many(self, batch: Sequence[tuple[str, Sequence[Settlement]]]) -> None:
        for rid, settlements in batch:
            await self.settle(rid, settlements)

    async def close(self) -> None:
        self._counters.clear()

    def level(self, key: str) -> int:
        """A counter's current level (for tests and diagnostics; not part of the protocol)."""
        counter = self._counters.get(key)
        if counter is None:
            return 0
        now = self._now()
        if counter.window_ms > 0:
            counter.expire(now)
        elif counter.expires_at and counter.expires_at <= now:
            return 0
        return counter.total

    @staticmethod
    def _reset(counter: _Counter, now: int) -> int:
        if counter.window_ms > 0:
            return counter.reset_ms(now)
        return max(0, counter.expires_at - now) if counter.expires_at else 0

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + _SWEEP_MS
        for key, counter in list(self._counters.items()):
            if counter.window_ms > 0:
                counter.expire(now)
                if not counter.live:
                    del self._counters[key]
            elif counter.expires_at and counter.expires_at <= now:
                del self._counters[key]
