"""Explain a routing decision without making it: the order, the strategy's reasons, breakers, skips."""

from __future__ import annotations

from tollgate.routing.resolver import Route
from tollgate.routing.split import arm_first, arms
from tollgate.routing.strategies import Candidate, RoutingState, describe, order
from tollgate.types import JSONObject, JSONValue

_STRATEGY_WHY = {
    "priority": "deployments in config order (lower priority tiers first)",
    "weighted": "a weighted random order by each deployment's weight (one draw shown; each request draws anew)",
    "least_latency": "lowest moving-average latency first (time to first byte for streams, total time otherwise)",
    "lowest_cost": "lowest estimated cost first, from the price table and the prompt size",
    "least_busy": "fewest requests in flight in this process first",
}


def explain(
    route: Route,
    state: RoutingState,
    *,
    prompt_tokens: int,
    output_tokens: int,
    stream: bool,
    config_version: str,
    arm: Candidate | None = None,
) -> JSONObject:
    """The decision the dispatcher would take for a request now, and why; changes no state except
    reading breakers' time-based transitions (an open breaker past its open time reads as half-open)."""
    now = state.clock()
    ordered = order(
        route.strategy, route.plan, state, prompt_tokens=prompt_tokens, output_tokens=output_tokens, stream=stream
    )
    if arm is not None:
        ordered = arm_first(ordered, arm)
    settings = state.settings
    candidates: list[JSONValue] = []
    chosen: str | None = None
    for position, cand in enumerate(ordered):
        breaker = state.breakers.get(cand.key)
        breaker_state = breaker.current(now, settings.breaker) if breaker is not None else "closed"
        skip = state.unavailable(cand, now)
        if skip is None and chosen is None:
            chosen = cand.key
        calls, failures = breaker.window(now, settings.breaker) if breaker is not None else (0, 0)
        stats = state.latency.get(cand.key)
        entry: JSONObject = {
            "position": position + 1,
            "deployment": cand.key,
            "provider": cand.deployment.provider,
            "model": cand.deployment.model,
            "config_index": cand.index,
            "priority": cand.priority,
            "weight": cand.weight,
            "region": cand.region,
            "tags": list(cand.tags),
            "max_concurrency": cand.max_concurrency,
            "in_flight": state.in_flight.get(cand.key, 0),
            "why_here": describe(
                route.strategy, cand, state, prompt_tokens=prompt_tokens, output_tokens=output_tokens, stream=stream
            ),
            "breaker": {
                "state": breaker_state,
                "reason": breaker.reason if breaker is not None and breaker.reason else None,
                "consecutive_failures": breaker.consecutive if breaker is not None else 0,
                "window_calls": calls,
                "window_failures": failures,
            },
            "latency_ms": {
                "ttfb": None if stats is None or stats.ttfb is None else round(stats.ttfb * 1000, 3),
                "total": None if stats is None or stats.total is None else round(stats.total * 1000, 3),
            },
            "skipped": skip is not None,
            "skip_reason": skip,
        }
        candidates.append(entry)
    for exclusion in route.excluded:
        # Removed by a rule or by data residency before the strategy ran: never tried for this request.
        cand = exclusion.candidate
        candidates.append(
            {
                "position": None,
                "deployment": cand.key,
                "provider": cand.deployment.provider,
                "model": cand.deployment.model,
                "config_index": cand.index,
                "priority": cand.priority,
                "region": cand.region,
                "tags": list(cand.tags),
                "skipped": True,
                "skip_reason": exclusion.reason,
                "excluded_by": exclusion.by,
            }
        )
    requests, extra = state.budget.totals(now, settings.budget)
    budget = settings.budget
    error_code: str | None = None  # the 503 a request would get now
    if chosen is None:
        error_code = "no_compliant_deployment" if route.residency or not route.plan else "no_healthy_deployment"
    split: JSONValue = None
    if route.split is not None:
        members = arms(route.plan)
        total = sum(c.weight for c in members)
        split = {
            "sticky": route.split.sticky,
            "arm": arm.key if arm is not None else None,
            "arms": [{"deployment": c.key, "weight": c.weight, "share": round(c.weight / total, 6)} for c in members],
        }
    return {
        "model": route.requested,
        "logical": route.logical,
        "config_version": config_version,
        "strategy": route.strategy,
        "strategy_reason": _STRATEGY_WHY[route.strategy],
        "chosen": chosen,
        "outcome": "dispatch" if chosen is not None else "fail_fast_503",
        "error_code": error_code,
        "target": route.target,
        "rules_matched": list(route.rules),
        "split": split,
        "residency": list(route.residency),
        "candidates": candidates,
        "retries": {
            "max_retries": settings.retries.max_retries,
            "retry_after_max_seconds": settings.retries.retry_after_max,
        },
        "retry_budget": {
            "window_seconds": budget.window_seconds,
            "requests": requests,
            "extra_calls": extra,
            "allowed_extra_calls": int(budget.ratio * requests + budget.min_retries),
            "can_retry": state.budget.can_spend(now, budget),
        },
    }
