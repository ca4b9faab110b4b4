"""The explanation shows the strategy's order and reasons, breaker states and why a candidate is skipped."""

from __future__ import annotations

from tollgate.providers.base import Deployment
from tollgate.routing.breaker import BreakerSettings
from tollgate.routing.explain import explain
from tollgate.routing.resolver import Route
from tollgate.routing.strategies import Candidate, RoutingSettings, RoutingState


def _route() -> Route:
    deps = tuple(Deployment("p", "openai", m, "http://x") for m in ("a", "b"))
    plan = (
        Candidate(deps[0], 0, input_nanos=5.0, output_nanos=5.0, region="eu", tags=("gold",)),
        Candidate(deps[1], 1, input_nanos=1.0, output_nanos=1.0),
    )
    return Route("smart", deps, True, "lowest_cost", plan)


def test_explains_order_reasons_and_skips() -> None:
    now = [50.0]
    settings = RoutingSettings(breaker=BreakerSettings(consecutive_failures=1, open_seconds=30))
    state = RoutingState(settings, clock=lambda: now[0])
    state.breaker("p/b").failure(now[0], settings.breaker)
    out = explain(_route(), state, prompt_tokens=100, output_tokens=10, stream=False, config_version="v1")
    assert out["strategy"] == "lowest_cost" and out["config_version"] == "v1"
    cands = out["candidates"]
    assert isinstance(cands, list)
    first, second = cands
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["deployment"] == "p/b" and second["deployment"] == "p/a"  # cheaper first
    assert first["skipped"] is True
    assert "circuit breaker open (1 consecutive failures)" in str(first["skip_reason"])
    assert first["breaker"] == {
        "state": "open",
        "reason": "1 consecutive failures",
        "consecutive_failures": 1,
        "window_calls": 1,
        "window_failures": 1,
    }
    assert "estimated $" in str(second["why_here"]) and second["region"] == "eu" and second["tags"] == ["gold"]
    assert out["chosen"] == "p/a" and out["outcome"] == "dispatch"


def test_all_open_means_fail_fast() -> None:
    settings = RoutingSettings(breaker=BreakerSettings(consecutive_failures=1))
    state = RoutingState(settings, clock=lambda: 0.0)
    for key in ("p/a", "p/b"):
        state.breaker(key).failure(0.0, settings.breaker)
    out = explain(_route(), state, prompt_tokens=1, output_tokens=1, stream=True, config_version="v")
    assert out["chosen"] is None and out["outcome"] == "fail_fast_503"
