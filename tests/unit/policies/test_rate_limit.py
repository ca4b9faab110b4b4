"""RateLimitPolicy: requests, tokens and parallel limits per scope, settlement, headers, and a Redis outage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from tests.fakes.harness import free_port
from tollgate.config.limits import RateLimitSettings
from tollgate.context import Limit, Principal, RequestContext
from tollgate.errors import RateLimitError, TollgateError
from tollgate.policies.rate_limit import RateLimitPolicy, duration
from tollgate.routing.resolver import Route
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.state.counters_redis import RedisCounterStore
from tollgate.wire.openai import Usage

ROUTE = Route(requested="demo/tollgate-demo", candidates=(), logical=False)


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def policy(clock: Clock) -> AsyncIterator[RateLimitPolicy]:
    p = RateLimitPolicy(MemoryCounterStore(clock), RateLimitSettings(default_max_output_tokens=100))
    await p.start()
    yield p
    await p.stop()


def ctx_for(*limits: Limit, prompt: int = 10, max_output: int | None = None, key_id: str = "k_1") -> RequestContext:
    ctx = RequestContext(request_id="req", front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal = Principal(key_id=key_id, name="svc", role="user", user_id="u1", team_id="t1", limits=limits)
    ctx.estimated_prompt_tokens = prompt
    ctx.max_output_tokens = max_output
    return ctx


def headers(ctx: RequestContext) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in ctx.extra_headers}


async def admitted(policy: RateLimitPolicy, ctx: RequestContext) -> RequestContext:
    await policy.admit(ctx, ROUTE)
    return ctx


async def refused(policy: RateLimitPolicy, ctx: RequestContext) -> RateLimitError:
    with pytest.raises(RateLimitError) as info:
        await policy.admit(ctx, ROUTE)
    return info.value


async def test_requests_per_minute(policy: RateLimitPolicy, clock: Clock) -> None:
    limit = Limit("key", "k_1", rpm=3)
    for remaining in (2, 1, 0):
        ctx = await admitted(policy, ctx_for(limit))
        assert headers(ctx)["x-ratelimit-remaining-requests"] == str(remaining)
        policy.on_finalize(ctx)
    clock.now += 20
    ctx = ctx_for(limit, key_id="k_secret_id")
    err = await refused(policy, ctx)
    assert err.status == 429
    assert err.message == "Rate limit reached for this API key: 3 requests per minute. Try again in 40s."
    assert "k_secret_id" not in err.message
    assert err.headers == {"retry-after": "40"}
    # The 429 carries the rate-limit headers too (the front door sends ctx.extra_headers with every error).
    assert headers(ctx) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "40s",
    }
    clock.now += 40
    assert headers(await admitted(policy, ctx_for(limit)))["x-ratelimit-remaining-requests"] == "2"


async def test_tokens_are_reserved_then_settled_to_real_usage(policy: RateLimitPolicy) -> None:
    limit = Limit("team", "t1", tpm=1000)
    first = await admitted(policy, ctx_for(limit, prompt=100, max_output=400))
    second = await admitted(policy, ctx_for(limit, prompt=100, max_output=400))
    assert headers(second)["x-ratelimit-remaining-tokens"] == "0"
    err = await refused(policy, ctx_for(limit, prompt=100, max_output=400))
    assert err.message.startswith("Rate limit reached for this team: 1000 tokens per minute.")
    first.usage = Usage(prompt_tokens=80, completion_tokens=20)
    policy.on_finalize(first)
    await policy.flush()
    third = await admitted(policy, ctx_for(limit, prompt=100, max_output=300))  # 100 + 500 + 400 = 1000
    assert headers(third) == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m0s",
    }


async def test_default_output_reservation_and_outcomes_without_usage(policy: RateLimitPolicy) -> None:
    limit = Limit("key", "k_1", tpm=1000)
    store = policy.store
    assert isinstance(store, MemoryCounterStore)
    failed = await admitted(policy, ctx_for(limit, prompt=50))  # 50 + the default 100 output tokens
    assert store.level("tpm:key:k_1") == 150
    failed.status = 502  # the provider failed and produced nothing: nothing was used
    policy.on_finalize(failed)
    await policy.flush()
    assert store.level("tpm:key:k_1") == 0
    silent = await admitted(policy, ctx_for(limit, prompt=50))
    policy.on_finalize(silent)  # a success that reported no usage keeps its reservation
    await policy.flush()
    assert store.level("tpm:key:k_1") == 150
    cut = await admitted(policy, ctx_for(limit, prompt=50, max_output=800))
    cut.status, cut.usage = 499, Usage(prompt_tokens=50, completion_tokens=7)  # a stream the client left
    policy.on_finalize(cut)
    await policy.flush()
    assert store.level("tpm:key:k_1") == 207


async def test_embeddings_reserve_no_output_tokens(policy: RateLimitPolicy) -> None:
    ctx = ctx_for(Limit("key", "k_1", tpm=1000), prompt=300)
    ctx.endpoint = "embeddings"
    assert headers(await admitted(policy, ctx))["x-ratelimit-remaining-tokens"] == "700"


async def test_separate_input_and_output_limits(policy: RateLimitPolicy) -> None:
    limit = Limit("org", "o1", input_tpm=300, output_tpm=150)
    ok = await admitted(policy, ctx_for(limit, prompt=200, max_output=100))
    assert headers(ok)["x-ratelimit-remaining-tokens"] == "50"  # the tighter of the two: output
    err = await refused(policy, ctx_for(limit, prompt=50, max_output=100))
    assert "organization: 150 output tokens per minute" in err.message
    ok.usage = Usage(prompt_tokens=200, completion_tokens=10)
    policy.on_finalize(ok)
    await policy.flush()
    await admitted(policy, ctx_for(limit, prompt=50, max_output=100))


async def test_the_tightest_scope_wins(policy: RateLimitPolicy) -> None:
    limits = (Limit("key", "k_1", rpm=100, tpm=10_000), Limit("team", "t1", rpm=2, tpm=50_000))
    ctx = await admitted(policy, ctx_for(*limits))
    assert headers(ctx)["x-ratelimit-limit-requests"] == "2"
    assert headers(ctx)["x-ratelimit-remaining-requests"] == "1"
    assert headers(ctx)["x-ratelimit-limit-tokens"] == "10000"  # the key is tighter on tokens
    await admitted(policy, ctx_for(*limits))
    err = await refused(policy, ctx_for(*limits))
    assert "this team: 2 requests per minute" in err.message
    # Another key of the same team is held back by the team's limit as well...
    with pytest.raises(RateLimitError):
        await policy.admit(ctx_for(Limit("key", "k_2", rpm=100), Limit("team", "t1", rpm=2)), ROUTE)
    # ...and a refusal took nothing from the other scopes.
    store = policy.store
    assert isinstance(store, MemoryCounterStore)
    assert store.level("rpm:key:k_1") == 2
    assert store.level("rpm:key:k_2") == 0


async def test_parallel_requests(policy: RateLimitPolicy) -> None:
    limit = Limit("key", "k_1", max_parallel=2)
    first = await admitted(policy, ctx_for(limit))
    await admitted(policy, ctx_for(limit))
    err = await refused(policy, ctx_for(limit))
    assert err.message.startswith("Too many parallel requests: this API key allows 2 at once.")
    assert err.headers == {"retry-after": "1"}
    policy.on_finalize(first)
    await policy.flush()
    await admitted(policy, ctx_for(limit))


async def test_a_request_refused_by_a_later_policy_gives_its_slot_and_tokens_back(policy: RateLimitPolicy) -> None:
    limit = Limit("key", "k_1", max_parallel=1, tpm=500)
    ctx = await admitted(policy, ctx_for(limit, prompt=100, max_output=400))
    ctx.status = 402  # e.g. the budget policy refused it after this one admitted it
    policy.on_finalize(ctx)
    await policy.flush()
    again = await admitted(policy, ctx_for(limit, prompt=100, max_output=400))
    assert headers(again)["x-ratelimit-remaining-tokens"] == "0"


async def test_no_limits_no_work(policy: RateLimitPolicy) -> None:
    ctx = await admitted(policy, ctx_for())
    assert ctx.extra_headers == []
    policy.on_finalize(ctx)
    anonymous = RequestContext(request_id="r", front_door="openai", endpoint="models", config_version="v1")
    policy.on_finalize(anonymous)  # finalize of a request that never reached ADMIT


def test_reset_durations_in_openai_format() -> None:
    assert [duration(ms) for ms in (0, 20, 999, 1000, 1500, 59_999, 60_000, 360_000, 90_250, 3_723_000)] == [
        "0s",
        "20ms",
        "999ms",
        "1s",
        "1.5s",
        "59.999s",
        "1m0s",
        "6m0s",
        "1m30.25s",
        "1h2m3s",
    ]


async def test_redis_down_fails_open_to_local_limits(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", fail_open=True, timeout_seconds=0.2)
    policy = RateLimitPolicy(store)
    limit = Limit("key", "k_1", rpm=2, max_parallel=5)
    try:
        with caplog.at_level(logging.WARNING, logger="tollgate.ratelimit"):
            first = await admitted(policy, ctx_for(limit))
            await admitted(policy, ctx_for(limit))
            await refused(policy, ctx_for(limit))  # the local fallback still enforces the limit
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # loud, but once a minute, not once per request
        assert "RATE LIMITER DEGRADED" in warnings[0].getMessage()
        assert "per process" in warnings[0].getMessage()
        assert store.fallbacks == 3
        assert store.errors == 1  # later calls went straight to the fallback while Redis is marked down
        policy.on_finalize(first)
        await policy.flush()
        assert store.fallback.level("max_parallel:key:k_1") == 1  # settled where it was reserved
    finally:
        await policy.stop()
        await store.close()


async def test_redis_down_fails_closed_with_503() -> None:
    store = RedisCounterStore(f"redis://127.0.0.1:{free_port()}/0", fail_open=False, timeout_seconds=0.2)
    policy = RateLimitPolicy(store)
    try:
        with pytest.raises(TollgateError) as info:
            await policy.admit(ctx_for(Limit("key", "k_1", rpm=2)), ROUTE)
        err = info.value
        assert (err.status, err.code, err.headers) == (503, "rate_limiter_unavailable", {"retry-after": "1"})
        assert "rate-limit store is unreachable" in err.message
        assert "6379" not in err.message and "redis://" not in err.message
        assert policy.unavailable == 1
    finally:
        await policy.stop()
        await store.close()
