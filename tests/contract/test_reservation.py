"""ReservationPolicy: rate limits and budgets reserved in one atomic store call, on both counter backends.

What must hold is what held when the two policies reserved one after the other: nothing is taken unless
everything fits, a caller over a rate limit gets the rate limit's 429 (and holds no budget), a caller over
budget gets the budget's refusal (and used no request of its rate limit), and a budgeted stream may still
start on what is left of its budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from tests.contract.conftest import CounterStoreFactory, FakeClock
from tests.fakes.harness import free_port
from tollgate.config.budgets import BudgetSettings
from tollgate.config.limits import RateLimitSettings
from tollgate.config.pricing import ModelPriceConfig, PricingConfig
from tollgate.context import Budget, Limit, Principal, RequestContext
from tollgate.errors import BudgetExceededError, RateLimitError
from tollgate.policies.budget import BudgetPolicy, line_for
from tollgate.policies.rate_limit import RateLimitPolicy
from tollgate.policies.reservation import ReservationPolicy
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment
from tollgate.routing.resolver import Route
from tollgate.state.counters import Charge, CounterStore, Decision, Settlement
from tollgate.state.counters_redis import RedisCounterStore
from tollgate.wire.openai import Usage

DEPLOYMENT = Deployment("p", "openai", "m", "http://upstream")
ROUTE = Route(requested="m", candidates=(DEPLOYMENT,), logical=True)
# $1 / M input, $10 / M output: 1 output token = 10 micro-dollars, 1 input token = 1 micro-dollar.
PRICES = PriceBook(PricingConfig(models={"p/m": ModelPriceConfig(input=1, output=10)}))


class CountingStore:
    """A real store that counts the calls made to it (the thing under test is the policy, not the store)."""

    def __init__(self, inner: CounterStore) -> None:
        self.inner = inner
        self.reserves = 0

    async def reserve(self, rid: str, charges: Sequence[Charge]) -> Decision:
        self.reserves += 1
        return await self.inner.reserve(rid, charges)

    async def settle(self, rid: str, settlements: Sequence[Settlement]) -> None:
        await self.inner.settle(rid, settlements)

    async def settle_many(self, batch: Sequence[tuple[str, Sequence[Settlement]]]) -> None:
        await self.inner.settle_many(batch)

    async def close(self) -> None:
        await self.inner.close()


class Group:
    def __init__(self, store: CounterStore, clock: FakeClock, settings: BudgetSettings | None = None) -> None:
        self.store = store
        self.clock = clock
        self.rate_limits = RateLimitPolicy(store, RateLimitSettings(default_max_output_tokens=100))
        settings = settings or BudgetSettings(default_max_output_tokens=100)
        self.budgets = BudgetPolicy(store, PRICES, settings, clock=clock)
        self.policy = ReservationPolicy(store, (self.rate_limits, self.budgets))

    async def level(self, key: str, window_ms: int) -> int:
        probe = await self.store.reserve("probe", [Charge(key, 0, 10**15, window_ms)])
        return probe.levels[0].used

    def budget_key(self, budget: Budget) -> str:
        return line_for(budget, self.clock()).key

    async def finish(self, ctx: RequestContext, usage: Usage | None) -> None:
        ctx.deployment, ctx.usage, ctx.status = DEPLOYMENT, usage, 200
        if usage is not None:
            ctx.cost_usd = PRICES.cost_nanos(DEPLOYMENT, usage) / 1e9  # as the ledger policy prices it
        self.rate_limits.on_finalize(ctx)
        self.budgets.on_finalize(ctx)
        await self.rate_limits.flush()
        await self.budgets.flush()

    async def stop(self) -> None:
        await self.rate_limits.stop()
        await self.budgets.stop()


@pytest.fixture
async def group(make_counter_store: CounterStoreFactory, clock: FakeClock) -> AsyncIterator[Group]:
    g = Group(make_counter_store(), clock)
    yield g
    await g.stop()


def request(
    limits: tuple[Limit, ...], budgets: tuple[Budget, ...], *, max_output: int = 100, stream: bool = False
) -> RequestContext:
    ctx = RequestContext(request_id="req", front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal = Principal(
        key_id="k_1", name="svc", role="user", user_id="u1", team_id="t1", limits=limits, budgets=budgets
    )
    ctx.estimated_prompt_tokens, ctx.max_output_tokens, ctx.stream = 100, max_output, stream
    return ctx


async def test_limits_and_budgets_take_one_store_call(
    make_counter_store: CounterStoreFactory, clock: FakeClock
) -> None:
    store = CountingStore(make_counter_store())
    group = Group(store, clock)
    limits = (Limit("key", "k_1", rpm=10, tpm=10_000, max_parallel=2), Limit("team", "t1", rpm=100))
    budgets = (Budget("key", "k_1", 1.0), Budget("team", "t1", 5.0))
    try:
        ctx = request(limits, budgets)
        await group.policy.admit(ctx, ROUTE)
        assert store.reserves == 1
        headers = {k.decode(): v.decode() for k, v in ctx.extra_headers}
        assert headers["x-ratelimit-remaining-requests"] == "9"
        assert headers["x-tollgate-budget-remaining-usd"] == "0.998900"  # $1 - (100 in + 100 out tokens)
        assert await group.level("rpm:key:k_1", 60_000) == 1
        assert await group.level("tpm:key:k_1", 60_000) == 200  # prompt estimate + max_tokens
        assert await group.level("max_parallel:key:k_1", 300_000) == 1
        assert await group.level(group.budget_key(budgets[0]), 0) == 1100
        assert await group.level(group.budget_key(budgets[1]), 0) == 1100

        await group.finish(ctx, Usage(100, 20))  # both policies settle what they took, to the real usage
        assert await group.level("tpm:key:k_1", 60_000) == 120
        assert await group.level("max_parallel:key:k_1", 300_000) == 0
        assert await group.level(group.budget_key(budgets[0]), 0) == 300
        assert await group.level(group.budget_key(budgets[1]), 0) == 300
    finally:
        await group.stop()


async def test_a_rate_limit_refusal_holds_no_budget(group: Group) -> None:
    limits, budgets = (Limit("key", "k_1", rpm=1),), (Budget("team", "t1", 1.0),)
    await group.policy.admit(request(limits, budgets), ROUTE)
    with pytest.raises(RateLimitError):
        await group.policy.admit(request(limits, budgets), ROUTE)
    assert await group.level(group.budget_key(budgets[0]), 0) == 1100  # the first request's only


async def test_a_budget_refusal_uses_no_request_of_the_rate_limit(group: Group) -> None:
    limits, budgets = (Limit("key", "k_1", rpm=5, max_parallel=1),), (Budget("key", "k_1", 0.001),)
    ctx = request(limits, budgets)  # worst case $0.0011 > $0.001
    with pytest.raises(BudgetExceededError) as info:
        await group.policy.admit(ctx, ROUTE)
    assert "API key budget of $0.001" in info.value.message
    assert await group.level("rpm:key:k_1", 60_000) == 0
    assert await group.level("max_parallel:key:k_1", 300_000) == 0
    # The rate-limit headers still tell the caller where it stands.
    assert (b"x-ratelimit-remaining-requests", b"5") in ctx.extra_headers
    group.rate_limits.on_finalize(ctx)  # FINALIZE after a refusal settles nothing
    await group.rate_limits.flush()
    assert await group.level("max_parallel:key:k_1", 300_000) == 0


async def test_over_both_gets_the_rate_limit_refusal(group: Group) -> None:
    limits, budgets = (Limit("key", "k_1", max_parallel=1),), (Budget("key", "k_1", 0.0015),)
    await group.policy.admit(request(limits, budgets), ROUTE)  # takes the slot and $0.0011 of $0.0015
    with pytest.raises(RateLimitError, match="parallel"):
        await group.policy.admit(request(limits, budgets), ROUTE)


async def test_a_stream_starts_on_what_is_left_and_the_limits_are_taken_once(
    make_counter_store: CounterStoreFactory, clock: FakeClock
) -> None:
    settings = BudgetSettings(stream_reservation="estimate", stream_reserve_output_tokens=500)
    group = Group(make_counter_store(), clock, settings)
    limits, budgets = (Limit("key", "k_1", rpm=10),), (Budget("key", "k_1", 0.002),)
    try:
        # The estimate (100 in + 500 out = $0.0051) does not fit $0.002; what is left does, and a stream
        # may use it (it is cut there): the retry takes the rate limit's request exactly once.
        ctx = request(limits, budgets, max_output=1000, stream=True)
        await group.policy.admit(ctx, ROUTE)
        assert await group.level(group.budget_key(budgets[0]), 0) == 2000
        assert await group.level("rpm:key:k_1", 60_000) == 1
    finally:
        await group.stop()


async def test_redis_outage_settles_both_policies_in_the_fallback(clock: FakeClock) -> None:
    # Both policies settle under the one reservation id; both settlements must reach the in-process
    # fallback that took the reservation, not Redis.
    store = RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", fail_open=True, timeout_seconds=0.2)
    group = Group(store, clock)
    limits, budgets = (Limit("key", "k_1", max_parallel=3),), (Budget("key", "k_1", 1.0),)
    try:
        ctx = request(limits, budgets)
        await group.policy.admit(ctx, ROUTE)
        await group.finish(ctx, Usage(100, 20))
        assert store.fallback.level("max_parallel:key:k_1") == 0
        assert store.fallback.level(group.budget_key(budgets[0])) == 300
    finally:
        await group.stop()
        await store.close()


def test_every_part_must_share_the_group_store(clock: FakeClock) -> None:
    from tollgate.state.counters_memory import MemoryCounterStore

    one, other = MemoryCounterStore(clock), MemoryCounterStore(clock)
    with pytest.raises(ValueError, match="counter store"):
        ReservationPolicy(one, (RateLimitPolicy(one), BudgetPolicy(other, PRICES)))
