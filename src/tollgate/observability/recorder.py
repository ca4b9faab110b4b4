"""FINALIZE: turn each finished request's context into metric updates (the last finalize policy)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from tollgate.context import RequestContext
from tollgate.observability.metrics import GatewayMetrics
from tollgate.routing.strategies import RoutingState

# Error types that mean the provider failed (when a deployment was called): its 5xx/429, a timeout, a
# broken answer. A 400 the provider returned is the caller's mistake, and api_error is the gateway's own.
PROVIDER_ERROR_TYPES = frozenset({"upstream_error", "timeout_error", "rate_limit_error"})
# Error types of a refusal because a budget is spent (errors.BudgetExceededError: OpenAI's
# ``insufficient_quota``), raised before any provider is called.
BUDGET_ERROR_TYPES = frozenset({"insufficient_quota"})
# The label value of a model name that is not a label: one that resolved to nothing (404), or one past
# ``max_model_labels`` distinct names (so a client cannot grow the series without bound).
OTHER_MODEL = "other"
SAMPLE_INTERVAL_SECONDS = 1.0
_STATUS_CLASS = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")

Reading = Callable[[], int]


@dataclass(frozen=True, slots=True)
class StateReadings:
    """Counters of background parts (cumulative, except the queue depth), read into metrics at most once
    a second and at each scrape. Any of them may be absent."""

    ledger_queue_depth: Reading | None = None
    ledger_rows_written: Reading | None = None
    ledger_rows_spooled: Reading | None = None
    ledger_write_failures: Reading | None = None
    rate_limit_store_fallbacks: Reading | None = None
    rate_limit_store_errors: Reading | None = None
    rate_limit_unavailable: Reading | None = None
    guardrail_audit_written: Reading | None = None
    guardrail_audit_dropped: Reading | None = None
    secret_refresh_failures: Reading | None = None
    secret_rotations: Reading | None = None
    routing_sync_errors: Reading | None = None
    semantic_embedding_failures: Reading | None = None
    langfuse_exported: Reading | None = None
    langfuse_rejected: Reading | None = None
    langfuse_dropped: Reading | None = None
    langfuse_batch_failures: Reading | None = None


@dataclass(frozen=True, slots=True)
class RoutingReadings:
    """Routing's per-deployment state and counters (routing/events.py), and the deployments the current
    config declares: the only ones exported by name (the rest are counted as ``other``)."""

    state: RoutingState
    deployments: Callable[[], frozenset[str]]


_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class MetricsRecorder:
    """Records every finished request in ``GatewayMetrics``. Runs last in FINALIZE, so it sees the cost the
    ledger priced; takes no lock of its own and does no I/O (prometheus-client updates are in memory, or an
    mmap write in multiprocess mode)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        *,
        config_version: str = "",
        readings: StateReadings | None = None,
        max_model_labels: int = 200,
        require_auth: bool = False,
        routing: RoutingReadings | None = None,
    ) -> None:
        self.metrics = metrics
        self.require_auth = require_auth
        self._max_models = max_model_labels
        self._models: set[str] = set()
        self._user_label = "user" in metrics.tenant_labels
        self._key_label = "key" in metrics.tenant_labels
        self._config_version = ""
        if config_version:
            self._set_config_version(config_version)
        r = readings or StateReadings()
        m = metrics
        self._samples: list[tuple[Reading, Counter]] = [
            (read, counter)
            for read, counter in (
                (r.ledger_rows_written, m.ledger_rows.labels("written")),
                (r.ledger_rows_spooled, m.ledger_rows.labels("spooled")),
                (r.ledger_write_failures, m.ledger_write_failures),
                (r.rate_limit_store_fallbacks, m.rate_limit_store_fallbacks),
                (r.rate_limit_store_errors, m.rate_limit_store_errors),
                (r.rate_limit_unavailable, m.rate_limit_unavailable),
                (r.guardrail_audit_written, m.guardrail_audit_records.labels("written")),
                (r.guardrail_audit_dropped, m.guardrail_audit_records.labels("dropped")),
                (r.secret_refresh_failures, m.secret_refresh_failures),
                (r.secret_rotations, m.secret_rotations),
                (r.routing_sync_errors, m.routing_sync_errors),
                (r.semantic_embedding_failures, m.semantic_embedding_failures),
                (r.langfuse_exported, m.langfuse_events.labels("exported")),
                (r.langfuse_rejected, m.langfuse_events.labels("rejected")),
                (r.langfuse_dropped, m.langfuse_generations_dropped),
                (r.langfuse_batch_failures, m.langfuse_batch_failures),
            )
            if read is not None
        ]
        self._last = [0] * len(self._samples)
        self._queue_depth = r.ledger_queue_depth
        self._next_sample = 0.0
        self._series: dict[tuple[str, str, str, int, bool, tuple[str, ...]], _Series] = {}
        self._routing = routing
        self._routing_last: dict[tuple[str, tuple[str, ...]], int] = {}
        self._gauged: set[str] = set()  # deployments whose gauges were set (reset when they leave the config)

    # FINALIZE: must not raise or block.
    def on_finalize(self, ctx: RequestContext) -> None:
        now = time.perf_counter()
        m = self.metrics
        p = ctx.principal
        if p is None:
            tenant: tuple[str, ...] = ("", "")
        else:
            tenant = (p.team_id or "", p.org_id or "")
        if self._user_label:
            tenant += ((p.user_id or "") if p is not None else "",)
        if self._key_label:
            tenant += (p.key_id if p is not None else "",)
        dep = ctx.deployment
        provider = dep.provider if dep is not None else ""
        status = ctx.status
        endpoint = ctx.endpoint
        model = self._model_label(ctx.requested_model, status if dep is None else 0)
        stream = ctx.stream

        # The label children of the common series, looked up once per label combination (``labels()``
        # validates and locks on every call: most of this method's cost without the cache).
        key = (endpoint, model, provider, status // 100, stream, tenant)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self.metrics, endpoint, model, provider, status, stream, tenant)
        series.requests.inc()
        series.duration.observe(now - ctx.started)
        if stream and ctx.first_byte_at is not None:
            series.time_to_first_byte().observe(ctx.first_byte_at - ctx.started)
        usage = ctx.usage
        if usage is not None:
            if usage.prompt_tokens:
                series.tokens("input").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                series.tokens("output").inc(usage.completion_tokens)
            if usage.cached_tokens:
                series.tokens("cached_input").inc(usage.cached_tokens)
        cost = ctx.cost_usd
        if cost:
            series.cost().inc(cost)

        # Less common outcomes: plain label lookups.
        if status >= 400:
            error_type = ctx.error_type or ""
            m.request_errors.labels(endpoint, provider, str(status), error_type, *tenant).inc()
            if dep is None:
                if status == 429 and error_type == "rate_limit_error":
                    m.rate_limit_rejections.labels(endpoint, *tenant).inc()
                elif error_type in BUDGET_ERROR_TYPES:
                    m.budget_rejections.labels(endpoint, *tenant).inc()
            elif error_type in PROVIDER_ERROR_TYPES:
                m.provider_errors.labels(provider, str(status), error_type).inc()
        if ctx.client_disconnected:
            m.client_disconnects.labels(endpoint, model, provider, *tenant).inc()
        if ctx.attempts > 1:
            m.retries.labels(endpoint, model, provider, *tenant).inc(ctx.attempts - 1)
        if ctx.fallback:
            m.fallbacks.labels(endpoint, model, provider, *tenant).inc()
        # One increment per decision and rule that fired (rule ids and entity types come from fixed sets or
        # the config). ``allow`` is not counted: it is the requests minus the decisions (docs/guardrails.md).
        for d in ctx.guardrail_decisions:
            for rule in d.rules:
                m.guardrail_decisions.labels(d.guardrail, rule, d.phase, d.action, *tenant).inc()
        if ctx.routed:
            self._routing_decision(ctx, endpoint, model, status)
        if ctx.config_version != self._config_version:
            self._set_config_version(ctx.config_version)
        if now >= self._next_sample:
            self._next_sample = now + SAMPLE_INTERVAL_SECONDS
            self.sample()

    def sample(self) -> None:
        """Read the background parts' counters into their metrics (also called before each scrape)."""
        last = self._last
        for i, (read, counter) in enumerate(self._samples):
            try:
                value = read()
            except Exception:  # a reading must never break FINALIZE
                continue
            if value > last[i]:
                counter.inc(value - last[i])
            last[i] = value
        if self._queue_depth is not None:
            with contextlib.suppress(Exception):
                self.metrics.ledger_queue_depth.set(self._queue_depth())
        if self._routing is not None:
            with contextlib.suppress(Exception):  # a reading must never break FINALIZE
                self._sample_routing(self._routing)

    def _deployment_label(self, key: str | None) -> str:
        if not key:
            return ""
        routing = self._routing
        return key if routing is not None and key in routing.deployments() else OTHER_MODEL

    def _routing_decision(self, ctx: RequestContext, endpoint: str, model: str, status: int) -> None:
        dep = ctx.deployment
        if ctx.client_disconnected:
            outcome = "cancelled"
        elif dep is None:
            outcome = "unavailable" if status >= 400 else "primary"
        elif status >= 400:
            outcome = "failed"
        else:
            outcome = "fallback" if ctx.fallback else "primary"
        deployment = self._deployment_label(dep.label if dep is not None else None)
        arm = self._deployment_label(ctx.route_arm)
        self.metrics.routing_decisions.labels(endpoint, model, deployment, arm, outcome).inc()

    def _sample_routing(self, routing: RoutingReadings) -> None:
        """Counters of routing/events.py into metrics (the increase since the last sample), and the breaker
        state and in-flight gauges of the configured deployments."""
        m = self.metrics
        state = routing.state
        events = state.events
        configured = routing.deployments()

        def label(key: str) -> str:
            return key if key in configured else OTHER_MODEL

        counts: dict[tuple[str, tuple[str, ...]], int] = {}

        def add(metric: str, labels: tuple[str, ...], value: int) -> None:
            k = (metric, labels)
            counts[k] = counts.get(k, 0) + value

        for (key, outcome), n in list(events.calls.items()):
            add("calls", (label(key), outcome), n)
        for key, n in list(events.retries.items()):
            add("retries", (label(key),), n)
        for key, n in list(events.fallbacks.items()):
            add("fallbacks", (label(key),), n)
        for (key, reason), n in list(events.skips.items()):
            add("skips", (label(key), reason), n)
        for (key, to), n in list(events.breaker_transitions.items()):
            add("transitions", (label(key), to), n)
        for (key, shadow_outcome), n in list(events.shadow_calls.items()):
            add("shadow", (label(key), shadow_outcome), n)
        now = state.clock()
        settings = state.settings.breaker
        gauges: dict[str, tuple[int, int]] = {key: (0, 0) for key in configured}
        for key, breaker in list(state.breakers.items()):
            value = _BREAKER_VALUE[breaker.current(now, settings)]  # reads an expired open as half-open
            if breaker.half_opens:
                add("transitions", (label(key), "half_open"), breaker.half_opens)
            if key in gauges:
                gauges[key] = (value, gauges[key][1])
        for key, n in list(state.in_flight.items()):
            if key in gauges:
                gauges[key] = (gauges[key][0], n)
        counters = {
            "calls": m.deployment_calls,
            "retries": m.deployment_retries,
            "fallbacks": m.deployment_fallbacks,
            "skips": m.deployment_skips,
            "transitions": m.breaker_transitions,
            "shadow": m.shadow_calls,
        }
        last = self._routing_last
        for k, value in counts.items():
            before = last.get(k, 0)
            if value > before:
                counters[k[0]].labels(*k[1]).inc(value - before)
            last[k] = value
        for key, (breaker_value, in_flight) in gauges.items():
            m.breaker_state.labels(key).set(breaker_value)
            m.deployment_in_flight.labels(key).set(in_flight)
        for gone in self._gauged - gauges.keys():  # removed by a reload: drop its series
            with contextlib.suppress(KeyError):
                m.breaker_state.remove(gone)
                m.deployment_in_flight.remove(gone)
        self._gauged = set(gauges)

    def _model_label(self, model: str | None, unrouted_status: int) -> str:
        if model is None:
            return ""
        if model in self._models:
            return model
        # A name that resolved to no model is whatever the client typed: not a label value.
        if unrouted_status == 404 or len(self._models) >= self._max_models:
            return OTHER_MODEL
        self._models.add(model)
        return model

    def _set_config_version(self, version: str) -> None:
        info = self.metrics.config_info
        if self._config_version:
            info.labels(self._config_version).set(0)
        info.labels(version).set(1)
        self._config_version = version


class _Series:
    """The label children of one (endpoint, model, provider, status class, stream, tenant) combination;
    the optional ones are made on first use, so no empty series appears (no TTFB series for non-streams)."""

    __slots__ = ("_cost", "_labels", "_metrics", "_tokens", "_ttfb", "duration", "requests")

    def __init__(
        self,
        metrics: GatewayMetrics,
        endpoint: str,
        model: str,
        provider: str,
        status: int,
        stream: bool,
        tenant: tuple[str, ...],
    ) -> None:
        self._metrics = metrics
        self._labels = (endpoint, model, provider, tenant)
        status_class = _STATUS_CLASS[min(status // 100, 5)]
        self.requests = metrics.requests.labels(endpoint, model, provider, status_class, *tenant)
        self.duration = metrics.request_duration.labels(endpoint, model, provider, "true" if stream else "false")
        self._ttfb: Histogram | None = None
        self._tokens: dict[str, Counter] = {}
        self._cost: Counter | None = None

    def time_to_first_byte(self) -> Histogram:
        if self._ttfb is None:
            endpoint, model, provider, _ = self._labels
            self._ttfb = self._metrics.time_to_first_byte.labels(endpoint, model, provider)
        return self._ttfb

    def tokens(self, kind: str) -> Counter:
        child = self._tokens.get(kind)
        if child is None:
            _, model, provider, tenant = self._labels
            child = self._tokens[kind] = self._metrics.tokens.labels(kind, model, provider, *tenant)
        return child

    def cost(self) -> Counter:
        if self._cost is None:
            _, model, provider, tenant = self._labels
            self._cost = self._metrics.cost.labels(model, provider, *tenant)
        return self._cost
