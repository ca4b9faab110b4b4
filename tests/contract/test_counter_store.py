"""The ``CounterStore`` contract, against the in-process store and the real Redis alike."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.contract.conftest import CounterStoreFactory, FakeClock
from tollgate.state.counters import Charge, CounterStore, Settlement
from tollgate.state.counters_redis import RedisCounterStore

MINUTE = 60_000


def rpm(key: str, limit: int, amount: int = 1) -> Charge:
    return Charge(key, amount, limit, MINUTE)


async def test_reserves_up_to_the_limit_then_refuses(counter_store: CounterStore) -> None:
    for expected in (1, 2, 3):
        decision = await counter_store.reserve(f"r{expected}", [rpm("a", 3)])
        assert decision.allowed
        assert decision.levels[0].used == expected
    refused = await counter_store.reserve("r4", [rpm("a", 3)])
    assert not refused.allowed
    assert refused.refused == 0
    assert refused.levels[0].used == 3


async def test_all_charges_or_none(counter_store: CounterStore) -> None:
    assert (await counter_store.reserve("r1", [rpm("wide", 10), rpm("narrow", 1)])).allowed
    decision = await counter_store.reserve("r2", [rpm("wide", 10), rpm("narrow", 1), rpm("other", 10)])
    assert not decision.allowed
    assert decision.refused == 1
    assert [level.used for level in decision.levels] == [1, 1, 0]
    # Nothing was taken on the counters that had room.
    assert (await counter_store.reserve("r3", [rpm("wide", 2)])).levels[0].used == 2
    assert (await counter_store.reserve("r4", [rpm("other", 1)])).allowed


async def test_an_entry_counts_for_exactly_one_window(counter_store: CounterStore, clock: FakeClock) -> None:
    await counter_store.reserve("r1", [rpm("a", 3)])
    clock.advance(10)
    await counter_store.reserve("r2", [rpm("a", 3)])
    clock.advance(10)
    third = await counter_store.reserve("r3", [rpm("a", 3)])
    assert third.levels[0].reset_ms == MINUTE  # the newest entry leaves a full window from now
    clock.advance(10)  # t = 30 s
    refused = await counter_store.reserve("r4", [rpm("a", 3)])
    assert not refused.allowed
    assert refused.retry_after_ms == 30_000  # the first entry (t = 0) leaves at t = 60 s
    assert refused.levels[0].reset_ms == 50_000  # the last one (t = 20 s) at t = 80 s
    clock.advance(29.999)
    assert not (await counter_store.reserve("r5", [rpm("a", 3)])).allowed
    clock.advance(0.001)  # t = 60 s exactly: the first entry is out
    decision = await counter_store.reserve("r6", [rpm("a", 3)])
    assert decision.allowed
    assert decision.levels[0].used == 3


async def test_retry_after_counts_how_much_must_leave(counter_store: CounterStore, clock: FakeClock) -> None:
    for rid, amount in (("r1", 40), ("r2", 30), ("r3", 20)):
        assert (await counter_store.reserve(rid, [Charge("tpm", amount, 100, MINUTE)])).allowed
        clock.advance(5)
    # 90 used; 50 more needs 40 freed: only r1 (t = 0) leaving is enough -> 60 - 15 = 45 s.
    refused = await counter_store.reserve("r4", [Charge("tpm", 50, 100, MINUTE)])
    assert (refused.allowed, refused.retry_after_ms) == (False, 45_000)
    # 75 more needs 65 freed: r1 and r2 (t = 5 s) -> 50 s.
    refused = await counter_store.reserve("r5", [Charge("tpm", 75, 100, MINUTE)])
    assert refused.retry_after_ms == 50_000


async def test_settle_replaces_the_reservation_with_the_real_amount(
    counter_store: CounterStore, clock: FakeClock
) -> None:
    assert (await counter_store.reserve("r1", [Charge("tpm", 100, 150, MINUTE)])).allowed
    await counter_store.settle("r1", [Settlement("tpm", 100, 30, MINUTE)])
    assert (await counter_store.reserve("probe1", [Charge("tpm", 0, 150, MINUTE)])).levels[0].used == 30
    await counter_store.settle("r1", [Settlement("tpm", 30, 170, MINUTE)])  # used more than reserved: over the limit
    over = await counter_store.reserve("r2", [Charge("tpm", 1, 150, MINUTE)])
    assert not over.allowed
    assert over.levels[0].used == 170
    # The settled entry keeps its time: it leaves the window when the reservation would have.
    clock.advance(60)
    assert (await counter_store.reserve("r3", [Charge("tpm", 150, 150, MINUTE)])).allowed


async def test_settle_to_zero_removes_the_entry(counter_store: CounterStore) -> None:
    await counter_store.reserve("r1", [Charge("tpm", 100, 100, MINUTE)])
    await counter_store.settle("r1", [Settlement("tpm", 100, 0, MINUTE)])
    decision = await counter_store.reserve("r2", [Charge("tpm", 100, 100, MINUTE)])
    assert decision.allowed
    assert decision.levels[0].used == 100


async def test_settling_after_the_window_counts_only_the_excess_now(
    counter_store: CounterStore, clock: FakeClock
) -> None:
    await counter_store.reserve("long", [Charge("tpm", 100, 1000, MINUTE)])
    await counter_store.reserve("short", [Charge("tpm", 100, 1000, MINUTE)])
    clock.advance(61)  # a 61 s stream: its reservation left the window
    await counter_store.settle("long", [Settlement("tpm", 100, 250, MINUTE)])
    await counter_store.settle("short", [Settlement("tpm", 100, 20, MINUTE)])  # a shortfall after the window: dropped
    decision = await counter_store.reserve("probe", [Charge("tpm", 0, 1000, MINUTE)])
    assert decision.levels[0].used == 150
    assert decision.levels[0].reset_ms == MINUTE


async def test_a_gauge_is_acquired_and_released(counter_store: CounterStore, clock: FakeClock) -> None:
    lease = 900_000
    gauge = Charge("parallel", 1, 2, lease)
    assert (await counter_store.reserve("a", [gauge])).allowed
    assert (await counter_store.reserve("b", [gauge])).allowed
    assert not (await counter_store.reserve("c", [gauge])).allowed
    await counter_store.settle("a", [Settlement("parallel", 1, 0, lease)])
    assert (await counter_store.reserve("d", [gauge])).allowed
    await counter_store.settle("a", [Settlement("parallel", 1, 0, lease)])  # a second release changes nothing
    assert not (await counter_store.reserve("e", [gauge])).allowed
    clock.advance(900)  # slots whose requests never ended come back when their lease runs out
    assert (await counter_store.reserve("f", [gauge])).levels[0].used == 1


async def test_cumulative_counters_never_roll(counter_store: CounterStore, clock: FakeClock) -> None:
    budget = "budget:team:t1:2026-11"
    day_ms = 86_400_000
    assert (await counter_store.reserve("r1", [Charge(budget, 700_000, 1_000_000, 0, ttl_ms=day_ms)])).allowed
    clock.advance(3600)
    refused = await counter_store.reserve("r2", [Charge(budget, 400_000, 1_000_000, 0, ttl_ms=day_ms)])
    assert not refused.allowed
    assert refused.retry_after_ms == 0  # unknowable for a budget
    await counter_store.settle("r1", [Settlement(budget, 700_000, 550_000, 0, ttl_ms=day_ms)])
    decision = await counter_store.reserve("r3", [Charge(budget, 400_000, 1_000_000, 0, ttl_ms=day_ms)])
    assert decision.allowed
    assert decision.levels[0].used == 950_000
    assert 0 < decision.levels[0].reset_ms <= day_ms


async def test_amounts_beyond_float_precision_of_lua_print_stay_exact(counter_store: CounterStore) -> None:
    # Micro-dollars of a large total budget: Lua would print 1e+15 if the script formatted numbers naively.
    big = 10**15
    decision = await counter_store.reserve("r1", [Charge("big", big, 2 * big, 0)])
    assert decision.levels[0].used == big
    await counter_store.settle("r1", [Settlement("big", big, big + 7, 0)])
    assert (await counter_store.reserve("r2", [Charge("big", 0, 2 * big, 0)])).levels[0].used == big + 7


async def test_200_concurrent_reservations_against_a_limit_of_50(counter_store: CounterStore) -> None:
    decisions = await asyncio.gather(*(counter_store.reserve(f"r{i}", [rpm("hot", 50)]) for i in range(200)))
    assert sum(d.allowed for d in decisions) == 50
    assert max(d.levels[0].used for d in decisions) == 50


async def test_two_replicas_share_one_limit(make_counter_store: CounterStoreFactory) -> None:
    first, second = make_counter_store(), make_counter_store()
    attempts = [(first if i % 2 else second).reserve(f"r{i}", [rpm("shared", 50), rpm("t", 80)]) for i in range(200)]
    decisions = await asyncio.gather(*attempts)
    assert sum(d.allowed for d in decisions) == 50


async def test_redis_keys_are_namespaced_and_expire(redis_url: str, redis_prefix: str, clock: FakeClock) -> None:
    store = RedisCounterStore(redis_url, key_prefix=redis_prefix, clock=clock)
    try:
        await store.reserve("r1", [rpm("k", 5), Charge("budget", 5, 10, 0, ttl_ms=3_600_000), Charge("b2", 1, 9, 0)])
    finally:
        await store.close()
    client = redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(match=redis_prefix + "*"))
        assert keys == [redis_prefix + name for name in ("b2:amt", "budget:amt", "k:amt", "k:log")]
        for name in ("k:log", "k:amt"):
            assert 0 < client.pttl(redis_prefix + name) <= MINUTE + 1000
        assert 0 < client.pttl(redis_prefix + "budget:amt") <= 3_600_000
        assert client.pttl(redis_prefix + "b2:amt") == -1  # a cumulative counter without ttl is kept
    finally:
        client.close()


@pytest.mark.parametrize("limit", [0, 1])
async def test_a_charge_bigger_than_its_limit_waits_a_full_window(counter_store: CounterStore, limit: int) -> None:
    decision = await counter_store.reserve("r1", [Charge("x", 2, limit, MINUTE)])
    assert (decision.allowed, decision.retry_after_ms) == (False, MINUTE)


async def test_settle_many_settles_each_reservation_as_settle_would(counter_store: CounterStore) -> None:
    # Three requests on a rolling counter and a cumulative one, settled in one call.
    for rid in ("r1", "r2", "r3"):
        charges = [Charge("tpm:k", 100, 1000, 60_000), Charge("budget:k", 50, 10_000, 0)]
        assert (await counter_store.reserve(rid, charges)).allowed
    await counter_store.settle_many(
        [
            ("r1", [Settlement("tpm:k", 100, 30, 60_000), Settlement("budget:k", 50, 10, 0)]),
            ("r2", [Settlement("tpm:k", 100, 0, 60_000)]),
            ("r3", []),
        ]
    )
    probe = await counter_store.reserve("probe", [Charge("tpm:k", 0, 1000, 60_000), Charge("budget:k", 0, 10_000, 0)])
    assert [level.used for level in probe.levels] == [30 + 0 + 100, 10 + 50 + 50]
