"""Each strategy orders a route's candidates as documented; tiers first, config order breaks ties."""

from __future__ import annotations

import random
from collections import Counter

from tollgate.providers.base import Deployment
from tollgate.routing.breaker import BreakerSettings
from tollgate.routing.strategies import Candidate, RoutingSettings, RoutingState, order


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cand(model: str, index: int, **kw: float | int | None) -> Candidate:
    return Candidate(Deployment("p", "openai", model, "http://x"), index, **kw)  # type: ignore[arg-type]


def keys(cands: list[Candidate]) -> list[str]:
    return [c.deployment.model for c in cands]


A, B, C = cand("a", 0), cand("b", 1), cand("c", 2)


def test_priority_keeps_config_order_within_a_tier_and_tiers_ascending() -> None:
    state = RoutingState()
    tiered = [cand("a", 0, priority=1), cand("b", 1, priority=0), cand("c", 2, priority=1), cand("d", 3)]
    assert keys(order("priority", tiered, state)) == ["b", "d", "a", "c"]


def test_weighted_follows_the_weights_with_a_seeded_rng() -> None:
    state = RoutingState(rng=random.Random(42))
    heavy, light = cand("heavy", 0, weight=3.0), cand("light", 1, weight=1.0)
    firsts = Counter(order("weighted", [heavy, light], state)[0].deployment.model for _ in range(4000))
    assert 0.70 < firsts["heavy"] / 4000 < 0.80  # 3:1 -> 75 %
    again = RoutingState(rng=random.Random(42))
    replay = [order("weighted", [heavy, light], again)[0].deployment.model for _ in range(20)]
    state2 = RoutingState(rng=random.Random(42))
    assert replay == [order("weighted", [heavy, light], state2)[0].deployment.model for _ in range(20)]


def test_weighted_respects_tiers() -> None:
    state = RoutingState(rng=random.Random(1))
    backup = cand("backup", 0, weight=100.0, priority=1)
    for _ in range(50):
        assert keys(order("weighted", [backup, cand("a", 1), cand("b", 2)], state))[-1] == "backup"


def test_least_latency_prefers_measured_fastest_and_tries_unmeasured_first() -> None:
    state = RoutingState()
    state.stats(A.key).record(0.5, 2.0, 0.3)
    state.stats(B.key).record(0.1, 3.0, 0.3)
    assert keys(order("least_latency", [A, B, C], state, stream=False)) == ["c", "a", "b"]  # c unmeasured
    assert keys(order("least_latency", [A, B], state, stream=True)) == ["b", "a"]  # by time to first byte


def test_latency_average_moves_toward_new_samples() -> None:
    state = RoutingState()
    stats = state.stats("x")
    stats.record(None, 1.0, 0.5)
    stats.record(None, 3.0, 0.5)
    assert stats.total == 2.0 and stats.ttfb is None and stats.samples == 2


def test_lowest_cost_uses_prompt_size_and_puts_unpriced_last() -> None:
    cheap_in = cand("cheap-in", 0, input_nanos=1.0, output_nanos=100.0)
    cheap_out = cand("cheap-out", 1, input_nanos=10.0, output_nanos=10.0)
    unpriced = cand("unpriced", 2)
    state = RoutingState()
    # Long prompt, short answer: input price dominates.
    assert keys(
        order("lowest_cost", [unpriced, cheap_out, cheap_in], state, prompt_tokens=10_000, output_tokens=10)
    ) == [
        "cheap-in",
        "cheap-out",
        "unpriced",
    ]
    # Short prompt, long answer: output price dominates.
    assert keys(order("lowest_cost", [cheap_in, cheap_out], state, prompt_tokens=10, output_tokens=1000)) == [
        "cheap-out",
        "cheap-in",
    ]


def test_least_busy_orders_by_in_flight() -> None:
    state = RoutingState()
    state.in_flight.update({A.key: 3, B.key: 0, C.key: 1})
    assert keys(order("least_busy", [A, B, C], state)) == ["b", "c", "a"]


def test_acquire_counts_in_flight_and_enforces_max_concurrency() -> None:
    state = RoutingState()
    limited = cand("limited", 0, max_concurrency=2)
    assert state.acquire(limited, 0.0) is None and state.acquire(limited, 0.0) is None
    assert state.acquire(limited, 0.0) == "at max_concurrency (2 in flight)"
    assert state.unavailable(limited, 0.0) == "at max_concurrency (2 in flight)"
    state.release(limited)
    assert state.acquire(limited, 0.0) is None


def test_open_breaker_makes_a_candidate_unavailable_until_half_open() -> None:
    clock = Clock()
    settings = RoutingSettings(breaker=BreakerSettings(consecutive_failures=2, open_seconds=10))
    state = RoutingState(settings, clock=clock)
    for _ in range(2):
        state.breaker(A.key).failure(clock(), settings.breaker)
    reason = state.unavailable(A, clock())
    assert reason is not None and reason.startswith("circuit breaker open (2 consecutive failures)")
    assert state.acquire(A, clock()) is not None
    clock.now += 10
    assert state.unavailable(A, clock()) is None
    assert state.acquire(A, clock()) is None  # the probe
    assert state.unavailable(A, clock()) == "circuit breaker half-open and its probe is in flight"
