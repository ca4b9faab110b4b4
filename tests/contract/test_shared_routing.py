"""Breaker state and latency averages shared between replicas over the real Redis (state/routing_bus.py).

Each "replica" is a ``RoutingState`` with its own Redis connection and bus, in this process; they share only
Redis, under a key prefix of this test alone. Propagation is awaited by polling with a generous deadline:
these tests check what arrives, never how fast.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aredis

from tollgate.providers.base import Deployment
from tollgate.routing.breaker import BreakerSettings
from tollgate.routing.shared import SharedRouting
from tollgate.routing.strategies import Candidate, RoutingSettings, RoutingState, order
from tollgate.state.routing_bus import RedisRoutingBus

DEADLINE = 10.0  # seconds a propagation may take on a loaded CI machine before the test fails


@dataclass
class Replica:
    state: RoutingState
    bus: RedisRoutingBus
    shared: SharedRouting

    def fail(self, key: str, times: int) -> None:
        """What the dispatcher does on retryable failures: count them, announce a transition."""
        for _ in range(times):
            now = self.state.clock()
            changed = self.state.breaker(key).failure(now, self.state.settings.breaker)
            if changed is not None:
                self.state.transitioned(key, changed, now)

    def succeed(self, key: str) -> None:
        now = self.state.clock()
        assert self.state.breaker(key).allow(now, self.state.settings.breaker)
        if self.state.breaker(key).success(now, self.state.settings.breaker) is not None:
            self.state.transitioned(key, "closed", now)


def _cand(model: str, index: int = 0) -> Candidate:
    return Candidate(Deployment("openai", "openai", model, "http://127.0.0.1:1/v1"), index=index)


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE:g}s: {what}")
        await asyncio.sleep(0.01)


ReplicaFactory = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def make_replica(redis_url: str, redis_prefix: str) -> AsyncIterator[ReplicaFactory]:
    made: list[Replica] = []

    async def make(
        *, open_seconds: float = 30.0, interval: float = 60.0, url: str | None = None, wait: bool = True
    ) -> Replica:
        settings = RoutingSettings(breaker=BreakerSettings(consecutive_failures=3, open_seconds=open_seconds))
        state = RoutingState(settings)
        # A long interval by default: the tests run latency exchanges themselves, in the order they need.
        bus = RedisRoutingBus(url or redis_url, key_prefix=redis_prefix, interval=interval, timeout_seconds=2.0)
        shared = SharedRouting(state, bus, stale_seconds=3 * interval)
        bus.attach(shared)
        await bus.start()
        replica = Replica(state, bus, shared)
        made.append(replica)
        if wait:
            await asyncio.wait_for(bus.subscribed.wait(), DEADLINE)
            await _until(lambda: bus.exchanges >= 1, "the first latency exchange (made at start)")
        return replica

    yield make
    for replica in made:
        await replica.bus.stop()


async def test_a_breaker_opened_on_one_replica_is_skipped_by_the_other_from_the_same_moment(
    make_replica: ReplicaFactory,
) -> None:
    a, b = await make_replica(), await make_replica()
    flaky = _cand("flaky")
    assert b.state.unavailable(flaky, b.state.clock()) is None
    a.fail(flaky.key, 3)
    assert a.state.breakers[flaky.key].state == "open"
    await _until(lambda: b.state.unavailable(flaky, b.state.clock()) is not None, "the other replica skips it")
    reason = b.state.unavailable(flaky, b.state.clock())
    assert reason is not None and "3 consecutive failures, on another replica" in reason
    # Same process, same monotonic clock: the opening time came through Redis's clock and back, within the
    # error of two offset measurements (a round trip each), not the delivery delay.
    assert abs(b.state.breakers[flaky.key].opened_at - a.state.breakers[flaky.key].opened_at) < 0.25
    assert b.state.acquire(flaky, b.state.clock()) is not None  # the request path refuses it too
    assert b.shared.applied == 1
    # The replica that opened it does not apply its own news back.
    assert a.shared.applied == 0


async def test_half_open_follows_the_shared_opening_and_a_successful_probe_closes_everywhere(
    make_replica: ReplicaFactory, redis_url: str
) -> None:
    a, b = await make_replica(open_seconds=0.5), await make_replica(open_seconds=0.5)
    flaky = _cand("flaky")
    a.fail(flaky.key, 3)
    await _until(lambda: b.state.breakers.get(flaky.key) is not None, "the opening reaches the other replica")
    settings = b.state.settings.breaker
    # Half-open is not sent: both replicas derive it from the same opening time.
    await _until(lambda: b.state.breakers[flaky.key].current(b.state.clock(), settings) == "half_open", "half-open")
    # A took its opening time from the same publish; on a loaded machine its copy may land a few ms later.
    await _until(lambda: a.state.breakers[flaky.key].current(a.state.clock(), settings) == "half_open", "A half-open")
    a.succeed(flaky.key)  # A's probe answered
    await _until(lambda: b.state.breakers[flaky.key].state == "closed", "the close reaches the other replica")
    assert b.state.unavailable(flaky, b.state.clock()) is None
    # The fleet's list of open breakers no longer holds it.
    client = aredis.Redis.from_url(redis_url)
    try:
        await _until_async(lambda: client.hlen(a.bus.open_key), 0)
    finally:
        await client.aclose()


async def _until_async(read: Callable[[], Awaitable[int]], expected: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while (value := await read()) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"still {value}, expected {expected}")
        await asyncio.sleep(0.01)


async def test_a_failed_probe_on_another_replica_reopens_here(make_replica: ReplicaFactory) -> None:
    a, b = await make_replica(open_seconds=0.5), await make_replica(open_seconds=0.5)
    flaky = _cand("flaky")
    a.fail(flaky.key, 3)
    await _until(lambda: flaky.key in b.state.breakers, "the opening reaches the other replica")
    first_opening = b.state.breakers[flaky.key].opened_at
    settings = a.state.settings.breaker
    await _until(lambda: a.state.breakers[flaky.key].current(a.state.clock(), settings) == "half_open", "half-open")
    assert a.state.breaker(flaky.key).allow(a.state.clock(), settings)  # A takes the probe slot
    a.fail(flaky.key, 1)  # the probe failed: A reopens
    await _until(lambda: b.state.breakers[flaky.key].opened_at > first_opening, "the reopening reaches B")
    assert b.state.breakers[flaky.key].current(b.state.clock(), settings) == "open"


async def test_a_replica_started_later_starts_with_the_open_breakers_of_the_fleet(
    make_replica: ReplicaFactory,
) -> None:
    a = await make_replica()
    flaky = _cand("flaky")
    a.fail(flaky.key, 3)
    await _until(lambda: a.bus.published == 1, "the opening is written to Redis")
    late = await make_replica()  # returns once subscribed, which is after it read the open breakers
    assert late.state.unavailable(flaky, late.state.clock()) is not None
    assert late.state.unavailable(_cand("healthy"), late.state.clock()) is None


async def test_latency_of_another_replica_changes_the_least_latency_order(make_replica: ReplicaFactory) -> None:
    a, b = await make_replica(), await make_replica()
    x, y = _cand("x", 0), _cand("y", 1)
    alpha = 0.3
    # B measured x fast and y slow, once each; A, busy with both, finds the opposite over many calls.
    b.state.stats(x.key).record(None, 0.1, alpha)
    b.state.stats(y.key).record(None, 0.2, alpha)
    for _ in range(20):
        a.state.stats(x.key).record(None, 2.0, alpha)
        a.state.stats(y.key).record(None, 0.05, alpha)
    assert order("least_latency", [x, y], b.state) == [x, y]
    await a.bus.exchange()  # A writes its averages
    await b.bus.exchange()  # B reads them
    assert order("least_latency", [x, y], b.state) == [y, x]
    # Sample-weighted: B's single sample of x counts 1 against A's 20.
    fleet = b.state.fleet_latency[x.key]
    assert fleet.total_weight == 20 and fleet.local_total_weight == 1
    assert fleet.total == pytest.approx(2.0)
    # A deployment only A has measured gets A's average at B instead of being tried first to measure it.
    z = _cand("z", 2)
    a.state.stats(z.key).record(None, 5.0, alpha)
    await a.bus.exchange()
    await b.bus.exchange()
    assert order("least_latency", [z, y], b.state) == [y, z]


async def test_a_replica_that_stopped_reporting_no_longer_counts(make_replica: ReplicaFactory) -> None:
    a = await make_replica(interval=0.2)
    b = await make_replica(interval=0.2)
    x = _cand("x")
    a.state.stats(x.key).record(None, 3.0, 0.3)
    await _until(lambda: x.key in b.state.fleet_latency, "A's report reaches B")
    await a.bus.stop()  # A leaves and deletes its report
    await _until(lambda: x.key not in b.state.fleet_latency, "A's report is gone at B")


async def test_redis_down_means_local_routing_and_no_error_on_the_request_path(
    make_replica: ReplicaFactory,
) -> None:
    down = await make_replica(url="redis://127.0.0.1:1/0", interval=0.05, wait=False)
    flaky, healthy = _cand("flaky", 0), _cand("healthy", 1)
    down.fail(flaky.key, 3)  # publishing is queued, never raises
    assert down.state.unavailable(flaky, down.state.clock()) is not None  # its own breaker still works
    assert down.state.acquire(healthy, down.state.clock()) is None
    down.state.stats(flaky.key).record(None, 0.5, 0.3)
    down.state.stats(healthy.key).record(None, 0.1, 0.3)
    assert order("least_latency", [flaky, healthy], down.state) == [healthy, flaky]  # on its own averages
    await _until(lambda: down.bus.sync_errors >= 2 and down.bus.publish_errors >= 1, "the failures are counted")
    assert down.state.fleet_latency == {}
    assert not down.bus.subscribed.is_set()
