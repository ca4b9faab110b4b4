"""The ``CounterStore`` protocol: atomic multi-counter reservations over rolling windows, settled later.

One store serves every limit that counts something: requests and tokens per minute, parallel requests,
and (later) USD budgets in integer micro-dollars. Everything is an integer amount on a named counter.

Two kinds of counter, chosen per ``Charge`` by ``window_ms``:

* **Rolling window** (``window_ms > 0``): an exact sliding log. Every reservation is one entry
  ``(request id, time, amount)``; a counter's level is the sum of the amounts of its entries younger than
  the window. An entry stops counting exactly ``window_ms`` after it was made (no fixed buckets, no
  interpolation between two windows, so there is no edge burst of 2x the limit). Memory is one entry per
  request in the window. A parallel-requests gauge is the same thing: an entry of 1 per request in flight,
  removed when the request settles to 0, with the window acting as a lease so a slot held by a crashed
  replica comes back on its own.
* **Cumulative** (``window_ms == 0``): a plain running total without entries, for period budgets; the
  caller puts the period in the counter's name (``budget:team:t1:2026-11``) and gives ``ttl_ms`` so the
  counter disappears after the period.

Exactness: ``reserve`` checks and takes every charge of a request in one atomic step (all fit, or none is
taken), so no interleaving of concurrent requests, in one process or across replicas sharing Redis, lets a
counter pass its limit through admission. A counter can only go over its limit through ``settle`` raising
a reservation to the real amount (a request that used more than it reserved), which is what the caller
bounds by reserving an upper-bound estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class CounterStoreUnavailableError(Exception):
    """The store cannot be reached and is configured to fail closed (the caller answers 503)."""


@dataclass(frozen=True, slots=True)
class Charge:
    """Reserve ``amount`` on counter ``key`` if its level plus ``amount`` stays at or below ``limit``."""

    key: str
    amount: int
    limit: int
    window_ms: int  # > 0: rolling window (or lease) of this length; 0: cumulative counter
    ttl_ms: int = 0  # cumulative counters only: forget the counter this long after its last change (0: never)


@dataclass(frozen=True, slots=True)
class Level:
    """One counter's state as a reservation left it."""

    used: int  # the level after the reservation (when refused: the level it was refused at)
    reset_ms: int  # until every current entry has left the window (cumulative: until the counter expires, 0 if never)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    levels: tuple[Level, ...]  # one per charge, in the order given
    refused: int = -1  # index of the first charge that did not fit, -1 when allowed
    # When refused: the wait until every refused charge would fit, in ms (0 when unknowable, e.g. cumulative).
    # If that needs more than a few hundred entries to expire, the full drain time (an upper bound) is given.
    retry_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """Replace a reservation of ``reserved`` on ``key`` by the ``actual`` amount (0 removes it).

    On a rolling counter, an entry still inside its window is amended in place (it keeps its time). If the
    entry already left the window (a call longer than the window), a positive excess ``actual - reserved``
    is recorded as a new entry now, since those units were really used, and a shortfall is dropped.
    On a cumulative counter the total moves by ``actual - reserved``.
    """

    key: str
    reserved: int
    actual: int
    window_ms: int
    ttl_ms: int = 0


class CounterStore(Protocol):
    async def reserve(self, rid: str, charges: Sequence[Charge]) -> Decision:
        """Atomically take every charge under the reservation id ``rid``, or none of them.

        Counter keys within one call must be distinct. Raises ``CounterStoreUnavailableError`` only when
        the backend is unreachable and configured to fail closed."""
        ...

    async def settle(self, rid: str, settlements: Sequence[Settlement]) -> None:
        """Amend the reservation ``rid`` to the real amounts (see ``Settlement``). Never raises for an
        unreachable backend: the entries then expire with their window."""
        ...

    async def settle_many(self, batch: Sequence[tuple[str, Sequence[Settlement]]]) -> None:
        """``settle`` for several reservations at once (one round trip on Redis): what the background
        settlement queues use, so settling keeps up with admission under load."""
        ...

    async def close(self) -> None: ...


def open_counter_store(
    url: str | None,
    *,
    fail_open: bool = True,
    timeout_seconds: float = 0.5,
    key_prefix: str = "tollgate:rl:",
) -> CounterStore:
    """The store named by ``url``: ``None`` or ``memory://`` (in-process), ``redis://``, ``rediss://``, ``unix://``."""
    if url is None or url == "memory://":
        from tollgate.state.counters_memory import MemoryCounterStore

        return MemoryCounterStore()
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss", "unix"):
        from tollgate.state.counters_redis import RedisCounterStore

        return RedisCounterStore(url, fail_open=fail_open, timeout_seconds=timeout_seconds, key_prefix=key_prefix)
    raise ValueError(f"unsupported counter store URL scheme {scheme!r} (supported: memory://, redis://, rediss://)")
