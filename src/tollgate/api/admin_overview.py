"""``GET /admin/overview`` and ``GET /admin/models``: what the admin web UI's overview and models pages show.

The overview is the ledger's per-day totals (requests, errors, tokens, spend, cache hits and what they
saved, latency: mean, and p50 / p95 estimated from the aggregates' buckets) over the last N days, every day
present (zero, latency ``null``, when nothing ran), plus the latency distribution of this process from its
request-duration histogram. The models view is every logical model's route with each deployment's health
(circuit breaker, moving-average latency, requests in flight) as routing sees it now, and the providers
behind them.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from tollgate.api.http import Request, send_json
from tollgate.api.metrics import find_recorder
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.reports import latency_json, spend_report, usd
from tollgate.routing.explain import explain
from tollgate.state.ledger import SpendLine
from tollgate.types import JSONObject, JSONValue

READERS = ("admin", "viewer")
DEFAULT_DAYS = 14
MAX_DAYS = 366
# Endpoints whose latency is not a model call's: the admin API itself and requests to unknown paths.
_NOT_MODEL_CALLS = frozenset({"admin", "unknown"})
_NOMINAL_OUTPUT_TOKENS = 256


async def _reader(gw: Gateway, request: Request, ctx: RequestContext, what: str) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role not in READERS:
        raise PermissionDeniedError(
            f"{what} needs a key with role {' or '.join(READERS)}; this key has role '{principal.role}'.",
            code="insufficient_role",
        )


def parse_days(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_DAYS
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidRequestError(f"'days' must be a whole number from 1 to {MAX_DAYS}, not {text!r}.", param="days")
    return int(text)


async def overview(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _reader(gw, request, ctx, "Reading the overview")
    days = parse_days(request.query.get("days"))
    since, until = day_range(days)
    report = await spend_report(gw.storage.ledger, "day", since, until)
    by_day = {line.group: line for line in report.lines}
    series: list[JSONValue] = []
    for offset in range(days):
        day = (since + timedelta(days=offset)).isoformat()
        series.append({"day": day, **_totals(by_day.get(day) or SpendLine(day))})
    body: JSONObject = {
        "object": "overview",
        "since": since.isoformat(),
        "until": until.isoformat(),
        "days": series,
        "total": _totals(report.total),
        "latency": latency_summary(gw),
        "config_version": gw.snapshot.version,
    }
    await send_json(request.send, 200, body, ctx.response_headers())


def _totals(line: SpendLine) -> JSONObject:
    """One day's (or the window's) totals from the ledger's aggregates; latency covers every ledger row
    (model calls, cache hits and errors alike), p50 / p95 estimated from the aggregates' buckets."""
    return {
        "requests": line.requests,
        "errors": line.errors,
        "input_tokens": line.input_tokens,
        "output_tokens": line.output_tokens,
        "cost_usd": usd(line.cost_nanos),
        "cost_nanousd": line.cost_nanos,
        "cache_hits": line.cache_hits,
        "cost_saved_usd": usd(line.cost_saved_nanos),
        "cost_saved_nanousd": line.cost_saved_nanos,
        **latency_json(line),
    }


def latency_summary(gw: Gateway) -> JSONObject | None:
    """Model calls' total duration in this process since it started, from the metrics histogram;
    ``None`` when metrics are disabled."""
    recorder = find_recorder(gw)
    if recorder is None:
        return None
    buckets: dict[float, float] = {}
    count = total = 0.0
    for family in recorder.metrics.request_duration.collect():
        for sample in family.samples:
            if sample.labels.get("endpoint") in _NOT_MODEL_CALLS:
                continue
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
    cumulative = sorted(buckets.items())
    return {
        "scope": "process",
        "count": int(count),
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "p50_ms": quantile_ms(0.5, cumulative, count),
        "p95_ms": quantile_ms(0.95, cumulative, count),
        "p99_ms": quantile_ms(0.99, cumulative, count),
        # Per bucket (not cumulative): how many calls took at most ``le_ms`` and more than the bucket before.
        "buckets": [
            {"le_ms": None if math.isinf(le) else round(le * 1000, 3), "count": int(n - prev)}
            for (le, n), prev in zip(cumulative, [0.0, *(n for _, n in cumulative)], strict=False)
        ],
    }


def quantile_ms(q: float, cumulative: list[tuple[float, float]], count: float) -> float | None:
    """The q-quantile estimated from cumulative buckets, linear within a bucket (as PromQL's
    ``histogram_quantile``); a quantile in the open top bucket reads as the highest finite bound."""
    if not count:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for le, n in cumulative:
        if n >= rank:
            if math.isinf(le):
                return round(lower_bound * 1000, 3)
            share = (rank - lower_count) / (n - lower_count) if n > lower_count else 1.0
            return round((lower_bound + (le - lower_bound) * share) * 1000, 3)
        lower_bound, lower_count = le, n
    return round(lower_bound * 1000, 3)


async def models(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _reader(gw, request, ctx, "Reading models and routes")
    snapshot = gw.snapshot
    state = gw.dispatcher.state
    routes: list[JSONValue] = []
    covered: set[str] = set()
    for name in snapshot.config.models:
        decision = explain(
            snapshot.resolve(name),
            state,
            prompt_tokens=0,
            output_tokens=_NOMINAL_OUTPUT_TOKENS,
            stream=False,
            config_version=snapshot.version,
        )
        routes.append(decision)
        candidates = decision.get("candidates")
        if isinstance(candidates, list):
            covered.update(str(c.get("deployment")) for c in candidates if isinstance(c, dict))
    now = state.clock()
    direct: list[JSONValue] = []
    for key in sorted((set(state.breakers) | set(state.latency)) - covered):
        breaker = state.breakers.get(key)
        stats = state.latency.get(key)
        calls, failures = breaker.window(now, state.settings.breaker) if breaker is not None else (0, 0)
        direct.append(
            {
                "deployment": key,
                "breaker": {
                    "state": breaker.current(now, state.settings.breaker) if breaker is not None else "closed",
                    "reason": breaker.reason if breaker is not None and breaker.reason else None,
                    "consecutive_failures": breaker.consecutive if breaker is not None else 0,
                    "window_calls": calls,
                    "window_failures": failures,
                },
                "latency_ms": {
                    "ttfb": None if stats is None or stats.ttfb is None else round(stats.ttfb * 1000, 3),
                    "total": None if stats is None or stats.total is None else round(stats.total * 1000, 3),
                },
                "in_flight": state.in_flight.get(key, 0),
            }
        )
    providers: list[JSONValue] = [
        {"name": info.name, "type": info.type, "source": info.source, "models": list(info.config.models)}
        for info in snapshot.providers.values()
    ]
    body: JSONObject = {
        "object": "models",
        "config_version": snapshot.version,
        "providers": providers,
        "routes": routes,
        "direct": direct,
    }
    await send_json(request.send, 200, body, ctx.response_headers())


def day_range(days: int, today: date | None = None) -> tuple[date, date]:
    """The last ``days`` UTC days, today included."""
    until = today or datetime.now(UTC).date()
    return until - timedelta(days=days - 1), until
