"""Breaker state and latency averages shared between replicas: the decisions, without the I/O.

Each replica keeps routing on its own ``RoutingState`` (no round trip on the request path); this module is
what turns that state into messages for the other replicas and applies theirs. The Redis side (channel,
hashes, reconnects) is ``state/routing_bus.py``; docs/routing.md ("Shared across replicas") has the design.

* **Breakers.** An ``open`` or ``closed`` transition a replica makes by its own calls becomes a
  ``BreakerNews`` with the time it happened on the *shared clock* (Redis ``TIME``, which every replica
  measures its offset to). A replica applying it converts that time back to its own monotonic clock, so an
  opened breaker reopens everywhere at the same moment, and turns half-open everywhere ``open_seconds``
  later (half-open is derived from the opening time, never sent). A later opening wins over an earlier
  one; a close applies only to a breaker that did not reopen after it.
* **Latency.** Each replica reports, per deployment, its moving averages and how many samples it took
  recently (in the last ``window`` exchanges). The others' reports are combined into a ``FleetLatency``,
  the sample-weighted mean; least_latency blends it with the local average by the same weights
  (routing/strategies.py), so a replica that is busy with a deployment counts more than one that is not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson

from tollgate.routing.breaker import CircuitBreaker
from tollgate.routing.strategies import FleetLatency, LatencyStats, RoutingState

NewsKind = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class BreakerNews:
    """A breaker transition one replica made: ``at`` is on the shared clock (seconds)."""

    key: str
    state: NewsKind
    at: float
    reason: str = ""
    origin: str = ""

    def encode(self) -> bytes:
        return orjson.dumps({"k": self.key, "s": self.state, "at": self.at, "r": self.reason, "o": self.origin})

    @staticmethod
    def decode(data: bytes | str) -> BreakerNews | None:
        """The news, or None when the message is not one (malformed messages are ignored)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        key, state, at, reason, origin = obj.get("k"), obj.get("s"), obj.get("at"), obj.get("r", ""), obj.get("o", "")
        if not isinstance(key, str) or not isinstance(reason, str) or not isinstance(origin, str):
            return None
        if isinstance(at, bool) or not isinstance(at, int | float):
            return None
        if state == "open":
            return BreakerNews(key, "open", float(at), reason, origin)
        if state == "closed":
            return BreakerNews(key, "closed", float(at), reason, origin)
        return None


def news_of(key: str, breaker: CircuitBreaker, now: float, offset: float, origin: str) -> BreakerNews | None:
    """What to tell the others about ``breaker`` after it changed state at ``now`` (local clock), with
    ``offset`` = shared clock - local clock. Half-open is not news: everyone derives it from the opening."""
    if breaker.state == "open":
        return BreakerNews(key, "open", breaker.opened_at + offset, breaker.reason, origin)
    if breaker.state == "closed":
        return BreakerNews(key, "closed", now + offset, "", origin)
    return None


def apply_news(state: RoutingState, news: BreakerNews, now: float, offset: float) -> bool:
    """Apply another replica's transition to the local breaker; returns whether it changed anything.

    A time that lies in this replica's future (clock offsets are measured, not exact) counts as now."""
    at = min(news.at - offset, now)
    if news.state == "open":
        return state.breaker(news.key).adopt_open(at, f"{news.reason}, on another replica")
    breaker = state.breakers.get(news.key)
    return breaker is not None and breaker.adopt_closed(at)


# Latency: one report per replica, {deployment key: [ttfb, recent ttfb samples, total, recent total samples]}.
Report = dict[str, tuple[float | None, int, float | None, int]]


class RecentSamples:
    """Counts each deployment's samples over the last ``window`` exchanges (the weights of the blend)."""

    def __init__(self, window: int = 3) -> None:
        # The counts at each of the last ``window`` exchanges; before that many, the start (nothing counted).
        self._past: deque[dict[str, tuple[int, int]]] = deque([{}], maxlen=window)

    def report(self, latency: Mapping[str, LatencyStats]) -> Report:
        """This replica's report now; call once per exchange."""
        counts = {key: (s.ttfb_samples, s.samples) for key, s in latency.items()}
        oldest = self._past[0]
        self._past.append(counts)
        out: Report = {}
        for key, stats in latency.items():
            if stats.ttfb is None and stats.total is None:
                continue
            ttfb_then, total_then = oldest.get(key, (0, 0))
            out[key] = (stats.ttfb, stats.ttfb_samples - ttfb_then, stats.total, stats.samples - total_then)
        return out


def encode_report(report: Report, at: float) -> bytes:
    return orjson.dumps({"at": at, "d": {k: list(v) for k, v in report.items()}})


def decode_report(data: bytes | str) -> tuple[float, Report] | None:
    """(written at, on the shared clock; the report), or None when malformed."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    at, body = obj.get("at"), obj.get("d")
    if isinstance(at, bool) or not isinstance(at, int | float) or not isinstance(body, dict):
        return None
    out: Report = {}
    for key, row in body.items():
        if not isinstance(row, list) or len(row) != 4:
            continue
        ttfb, n_ttfb, total, n_total = row
        if not (_number_or_none(ttfb) and _number_or_none(total) and _count(n_ttfb) and _count(n_total)):
            continue
        out[key] = (ttfb, n_ttfb, total, n_total)
    return float(at), out


def _number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def combine(own: Report, others: list[Report]) -> dict[str, FleetLatency]:
    """The others' reports as one ``FleetLatency`` per deployment: the mean of their averages weighted by
    their recent samples (a plain mean when none of them called the deployment recently), with this
    replica's own recent sample counts for the blend."""
    sums: dict[str, list[float]] = {}  # key -> [ttfb w*v, ttfb w, ttfb plain sum, ttfb n, same for total]
    for report in others:
        for key, (ttfb, n_ttfb, total, n_total) in report.items():
            acc = sums.get(key)
            if acc is None:
                acc = sums[key] = [0.0] * 8
            if ttfb is not None:
                acc[0] += ttfb * n_ttfb
                acc[1] += n_ttfb
                acc[2] += ttfb
                acc[3] += 1
            if total is not None:
                acc[4] += total * n_total
                acc[5] += n_total
                acc[6] += total
                acc[7] += 1
    out: dict[str, FleetLatency] = {}
    for key, acc in sums.items():
        _, local_ttfb_n, _, local_total_n = own.get(key, (None, 0, None, 0))
        out[key] = FleetLatency(
            ttfb=_mean(acc[0], acc[1], acc[2], acc[3]),
            ttfb_weight=acc[1],
            total=_mean(acc[4], acc[5], acc[6], acc[7]),
            total_weight=acc[5],
            local_ttfb_weight=float(local_ttfb_n),
            local_total_weight=float(local_total_n),
        )
    return out


def _mean(weighted: float, weight: float, plain: float, count: float) -> float | None:
    if weight > 0:
        return weighted / weight
    return plain / count if count else None


class RoutingBus(Protocol):
    """The transport the coordinator publishes through (state/routing_bus.py implements it over Redis)."""

    origin: str

    @property
    def offset(self) -> float:
        """Shared clock minus the routing state's clock, as last measured."""
        ...

    def publish(self, key: str, message: bytes, is_open: bool) -> None:
        """Send a breaker transition to the others and record it as current; never blocks, never raises."""
        ...


class SharedRouting:
    """Connects one replica's ``RoutingState`` to the others through a ``RoutingBus``.

    The bus calls ``on_news``/``on_snapshot`` with what it receives, ``report``/``absorb`` at each latency
    exchange and ``disconnected`` when Redis is gone (this replica then routes on its local state only)."""

    def __init__(self, state: RoutingState, bus: RoutingBus, *, window: int = 3, stale_seconds: float = 6.0) -> None:
        self.state = state
        self.bus = bus
        self.stale_seconds = stale_seconds
        self._recent = RecentSamples(window)
        self._own: Report = {}
        self.applied = 0  # transitions of other replicas applied here (metrics, tests)
        state.on_transition = self._transitioned

    def _transitioned(self, key: str, breaker: CircuitBreaker, now: float) -> None:
        news = news_of(key, breaker, now, self.bus.offset, self.bus.origin)
        if news is not None:
            self.bus.publish(key, news.encode(), news.state == "open")

    def on_news(self, data: bytes | str) -> None:
        news = BreakerNews.decode(data)
        if news is None or news.origin == self.bus.origin:
            return
        if apply_news(self.state, news, self.state.clock(), self.bus.offset):
            self.applied += 1  # the breaker gauge shows the state; transition counters count own calls only

    def on_snapshot(self, entries: list[bytes | str]) -> None:
        """The breakers currently open in the fleet, read at (re)subscription: missed messages are in there."""
        for data in entries:
            self.on_news(data)

    def report(self, shared_now: float) -> bytes:
        self._own = self._recent.report(self.state.latency)
        return encode_report(self._own, shared_now)

    def absorb(self, reports: Mapping[str, bytes], shared_now: float) -> list[str]:
        """Take the other replicas' reports; returns the replicas whose report is stale (to delete)."""
        stale: list[str] = []
        fresh: list[Report] = []
        for origin, data in reports.items():
            if origin == self.bus.origin:
                continue
            decoded = decode_report(data)
            if decoded is None or shared_now - decoded[0] > self.stale_seconds:
                stale.append(origin)
                continue
            fresh.append(decoded[1])
        self.state.fleet_latency = combine(self._own, fresh)
        return stale

    def disconnected(self) -> None:
        """Redis is unreachable: forget the others' latency (it would only grow stale); breakers stay as they are."""
        self.state.fleet_latency = {}
