"""BudgetPolicy: periods, worst-case reservations, refusals, settlement, stream cutting and top-ups, alerts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tollgate.config.budgets import BudgetAlertSettings, BudgetSettings
from tollgate.config.pricing import ModelPriceConfig, PricingConfig
from tollgate.context import Budget, Principal, RequestContext
from tollgate.errors import BudgetExceededError, TollgateError
from tollgate.policies.budget import BudgetPolicy, BudgetStreamFilter, line_for, period_of
from tollgate.policies.budget_alerts import BudgetAlerts, sign
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment
from tollgate.routing.resolver import Route
from tollgate.state.counters import Charge
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.state.counters_redis import RedisCounterStore
from tollgate.types import JSONObject
from tollgate.wire.openai import Usage

# Wednesday 2026-11-18 12:00 UTC
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC).timestamp()
CHEAP = Deployment("p", "openai", "cheap", "http://x")
DEAR = Deployment("p", "openai", "dear", "http://x")
# cheap: $1 / M input, $10 / M output (1 output token = 10 micro-dollars); dear: 3x that.
PRICES = PriceBook(
    PricingConfig(
        models={"p/cheap": ModelPriceConfig(input=1, output=10), "p/dear": ModelPriceConfig(input=3, output=30)}
    )
)
ROUTE = Route(requested="m", candidates=(CHEAP,), logical=True)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryCounterStore:
    return MemoryCounterStore()


@pytest.fixture
async def policy(store: MemoryCounterStore) -> AsyncIterator[BudgetPolicy]:
    p = BudgetPolicy(store, PRICES, BudgetSettings(default_max_output_tokens=100), clock=Clock())
    await p.start()
    yield p
    await p.stop()


def ctx_for(*budgets: Budget, prompt: int = 100, max_output: int | None = None, stream: bool = False) -> RequestContext:
    ctx = RequestContext(request_id="req", front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal = Principal(key_id="k_1", name="svc", role="user", team_id="t1", budgets=budgets)
    ctx.estimated_prompt_tokens = prompt
    ctx.max_output_tokens = max_output
    ctx.stream = stream
    return ctx


def key(budget: Budget) -> str:
    return line_for(budget, NOW).key


def test_periods_are_calendar_periods_in_utc() -> None:
    assert period_of("daily", NOW)[0] == "2026-11-18"
    assert period_of("weekly", NOW)[0] == "2026-W47"
    _, start, end = period_of("weekly", NOW)
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 11, 16, tzinfo=UTC)  # Monday
    assert end - start == 7 * 86400
    assert period_of("monthly", NOW)[0] == "2026-11"
    assert datetime.fromtimestamp(period_of("monthly", NOW)[2], UTC) == datetime(2026, 12, 1, tzinfo=UTC)
    # ISO weeks cross the new year: 2027-01-01 is a Friday of week 53 of 2026.
    assert period_of("weekly", datetime(2027, 1, 1, tzinfo=UTC).timestamp())[0] == "2026-W53"
    assert period_of("total", NOW)[0] == "total"
    line = line_for(Budget("team", "t1", 20.0, "monthly"), NOW)
    assert line.key == "budget:team:t1:2026-11" and line.limit == 20_000_000
    assert line_for(Budget("key", "k", 1.0, "total"), NOW).ttl_ms == 0


async def test_reserves_the_worst_case_of_the_dearest_candidate(
    policy: BudgetPolicy, store: MemoryCounterStore
) -> None:
    budget = Budget("key", "k_1", 1.0, "daily")
    route = Route(requested="m", candidates=(CHEAP, DEAR), logical=True)
    ctx = ctx_for(budget, prompt=100, max_output=1000)
    await policy.admit(ctx, route)
    # dear: 100 x $3/M + 1000 x $30/M = $0.0303
    assert store.level(key(budget)) == 30_300
    assert (b"x-tollgate-budget-remaining-usd", b"0.969700") in ctx.extra_headers


async def test_every_scope_is_reserved_at_once_or_none(policy: BudgetPolicy, store: MemoryCounterStore) -> None:
    team = Budget("team", "t1", 20.0, "monthly")
    key_budget = Budget("key", "k_1", 0.001, "daily")  # too small for the default 100 output tokens
    with pytest.raises(BudgetExceededError) as info:
        await policy.admit(ctx_for(team, key_budget), ROUTE)
    err = info.value
    assert err.status == 402 and err.type == "insufficient_quota" and err.code == "budget_exceeded"
    assert err.message == (
        "API key budget of $0.001 for today cannot cover this request: $0.00 spent, $0.001 left, and this request "
        "may cost up to $0.0011 (lower max_tokens to fit)."
    )
    assert "k_1" not in err.message
    assert store.level(key(team)) == 0  # all or nothing


async def test_refusal_names_the_scope_and_period(store: MemoryCounterStore) -> None:
    team = Budget("team", "t1", 20.0, "monthly")
    await store.reserve("seed", [Charge(key(team), 19_980_000, 20_000_000, 0)])
    policy = BudgetPolicy(store, PRICES, BudgetSettings(exceed_status=403), clock=Clock())
    with pytest.raises(BudgetExceededError) as info:
        await policy.admit(ctx_for(team, max_output=10_000), ROUTE)
    assert info.value.status == 403
    assert info.value.message.startswith("Team budget of $20.00 for this month is used up: $19.98 spent")


async def test_settles_to_the_real_cost_and_refunds(policy: BudgetPolicy, store: MemoryCounterStore) -> None:
    budget = Budget("user", "u1", 5.0, "weekly")
    ok = ctx_for(budget, max_output=1000)
    await policy.admit(ok, ROUTE)
    failed = ctx_for(budget, max_output=1000)
    await policy.admit(failed, ROUTE)
    silent = ctx_for(budget, max_output=1000)
    await policy.admit(silent, ROUTE)
    worst = 100 * 1 + 1000 * 10  # micro-dollars
    assert store.level(key(budget)) == 3 * worst
    ok.deployment, ok.usage, ok.cost_usd = CHEAP, Usage(100, 20), 0.000300
    policy.on_finalize(ok)
    failed.deployment, failed.status = CHEAP, 502
    policy.on_finalize(failed)
    silent.deployment = CHEAP  # answered 200 but reported no usage: the reservation stands
    policy.on_finalize(silent)
    await policy.flush()
    assert store.level(key(budget)) == 300 + 0 + worst


async def test_concurrent_admissions_never_overshoot(policy: BudgetPolicy, store: MemoryCounterStore) -> None:
    budget = Budget("org", "o1", 0.101, "total")  # exactly 10 worst cases of 10,100 micro-dollars, plus change
    results = await asyncio.gather(
        *(policy.admit(ctx_for(budget, max_output=1000), ROUTE) for _ in range(30)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, BudgetExceededError) for r in results if r is not None)
    assert store.level(key(budget)) == 101_000


def chunk(text: str | None = None, finish: str | None = None) -> JSONObject:
    delta: JSONObject = {} if text is None else {"content": text}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "cheap",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


async def test_a_stream_is_cut_cleanly_at_its_budget(store: MemoryCounterStore) -> None:
    policy = BudgetPolicy(store, PRICES, BudgetSettings(stream_reserve_output_tokens=50), clock=Clock())
    budget = Budget("key", "k_1", 0.0003, "daily")  # 300 micro-dollars: prompt 100, then 20 output tokens
    ctx = ctx_for(budget, prompt=100, stream=True)
    await policy.admit(ctx, ROUTE)
    # The estimate (100 + 50 x 10 = 600) did not fit: the stream holds what is left.
    assert store.level(key(budget)) == 300
    ctx.deployment = CHEAP
    flt = policy.stream_filter(ctx)
    assert isinstance(flt, BudgetStreamFilter)
    out = flt.feed([chunk(""), chunk("abcdefgh" * 4)])  # 32 bytes = 8 tokens: 180 micro-dollars
    assert len(out) == 2 and not flt.done
    out = flt.feed([chunk("abcdefgh" * 4), chunk("more")])  # 16 tokens would cost 260; 17 would cost 270 ...
    assert len(out) == 2
    out = flt.feed([chunk("x" * 40), chunk("never")])  # ... 27 tokens would pass 300: cut before this chunk
    assert flt.done
    assert [c["choices"] for c in out] == [[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}], []]
    assert out[1]["usage"] == {"prompt_tokens": 100, "completion_tokens": 17, "total_tokens": 117}
    assert out[0]["id"] == "c1" and out[0]["model"] == "cheap"
    assert flt.feed([chunk("after")]) == []
    usage = flt.final_usage(None)
    assert usage is not None and usage.completion_tokens == 17 and usage.estimated
    ctx.usage = usage
    ctx.cost_usd = PRICES.cost_usd(CHEAP, usage)
    policy.on_finalize(ctx)
    await policy.flush()
    assert store.level(key(budget)) == 270 <= 300
    assert policy.cut_streams == 1
    await policy.stop()


async def test_a_stream_tops_up_while_budget_is_left(store: MemoryCounterStore) -> None:
    policy = BudgetPolicy(store, PRICES, BudgetSettings(stream_reserve_output_tokens=10), clock=Clock())
    budget = Budget("key", "k_1", 1.0, "daily")
    ctx = ctx_for(budget, prompt=100, stream=True)
    await policy.admit(ctx, ROUTE)
    assert store.level(key(budget)) == 200  # prompt + 10 tokens
    ctx.deployment = CHEAP
    flt = policy.stream_filter(ctx)
    assert flt is not None
    for _ in range(30):  # 30 tokens in all, 3x the first reservation: each step is topped up in time
        assert len(flt.feed([chunk("abcd")])) == 1
        await asyncio.sleep(0)  # the top-up runs between chunks, as network reads interleave
    assert not flt.done
    assert store.level(key(budget)) >= 100 + 30 * 10
    ctx.usage = Usage(100, 30)
    ctx.cost_usd = PRICES.cost_usd(CHEAP, ctx.usage)
    policy.on_finalize(ctx)
    await policy.flush()
    assert store.level(key(budget)) == 400
    await policy.stop()


async def test_no_filter_without_budget_or_when_cutting_is_off(store: MemoryCounterStore) -> None:
    policy = BudgetPolicy(store, PRICES, clock=Clock())
    free = ctx_for(stream=True)
    await policy.admit(free, ROUTE)
    assert policy.stream_filter(free) is None
    off = BudgetPolicy(store, PRICES, BudgetSettings(cut_streams_at_cap=False), clock=Clock())
    ctx = ctx_for(Budget("key", "k_1", 1.0), max_output=10, stream=True)
    await off.admit(ctx, ROUTE)
    assert off.stream_filter(ctx) is None
    await policy.stop()
    await off.stop()


async def test_redis_down_fails_closed_with_503_when_configured() -> None:
    store = RedisCounterStore("redis://127.0.0.1:1/0", fail_open=False, timeout_seconds=0.2)
    policy = BudgetPolicy(store, PRICES, clock=Clock())
    with pytest.raises(TollgateError) as info:
        await policy.admit(ctx_for(Budget("key", "k_1", 1.0), max_output=10), ROUTE)
    assert info.value.status == 503 and info.value.code == "budget_store_unavailable"
    await store.close()


async def test_threshold_alerts_fire_once_per_threshold(
    store: MemoryCounterStore, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = BudgetAlerts(store, BudgetAlertSettings(burn_rate_factor=None), clock=Clock())
    policy = BudgetPolicy(store, PRICES, BudgetSettings(), alerts=alerts, clock=Clock())
    budget = Budget("team", "t1", 0.01, "monthly")  # 10,000 micro-dollars; each request costs 1,000
    caplog.set_level(logging.WARNING, "tollgate.budget")
    for _ in range(12):
        ctx = ctx_for(budget, prompt=1, max_output=99)
        try:
            await policy.admit(ctx, ROUTE)
        except BudgetExceededError:
            continue
        finally:
            ctx.deployment, ctx.usage = CHEAP, Usage(0, 100)
            ctx.cost_usd = 0.001
            policy.on_finalize(ctx)
        await policy.flush()
    fired = [r.getMessage() for r in caplog.records if r.getMessage().startswith("budget alert")]
    assert len(fired) == 3
    assert '"threshold":0.5' in fired[0] and '"spent":0.005' in fired[0]
    assert '"threshold":0.8' in fired[1] and '"threshold":1.0' in fired[2]
    assert '"scope":"team","id":"t1","period":"monthly","period_label":"2026-11"' in fired[2]
    await policy.stop()


async def test_burn_rate_alert_when_the_last_hour_outspends_the_average(store: MemoryCounterStore) -> None:
    clock = Clock(datetime(2026, 11, 18, 1, 0, tzinfo=UTC).timestamp())
    alerts = BudgetAlerts(store, BudgetAlertSettings(thresholds=[], burn_rate_factor=3.0), clock=clock)
    line = line_for(Budget("key", "k_1", 100.0, "daily"), clock.now)

    async def spend(amount: int) -> None:
        await store.reserve("r", [Charge(line.key, amount, line.limit, 0, line.ttl_ms)])
        await alerts.observe("r", [line], amount)

    await spend(1_000)  # 01:00: the first spend of the day is no burst
    clock.now += 4 * 3600  # 05:00: $0.002 in 5 hours, $0.001 of it in the last hour: within 3x the average
    await spend(1_000)
    clock.now += 5 * 3600  # 10:00
    await spend(600)
    assert alerts.emitted == 0
    await spend(10_000)  # $0.0106 in the last hour vs an average of $0.00126 an hour: a burn-rate alert
    assert alerts.emitted == 1
    await spend(10_000)  # once an hour at most
    assert alerts.emitted == 1


def test_webhook_signature_is_hmac_sha256_hex() -> None:
    body = b'{"type":"budget.threshold"}'
    assert sign("s3cret", body) == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
