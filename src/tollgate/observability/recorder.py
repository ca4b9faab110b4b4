"""FINALIZE: turn each finished request's context into metric updates (the last finalize policy)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from tollgate.context import RequestContext
from tollgate.observability.metrics import GatewayMetrics

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
    secret_refresh_failures: Reading | None = None
    secret_rotations: Reading | None = None


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
                (r.secret_refresh_failures, m.secret_refresh_failures),
                (r.secret_rotations, m.secret_rotations),
            )
            if read is not None
        ]
        self._last = [0] * len(self._samples)
        self._queue_depth = r.ledger_queue_depth
        self._next_sample = 0.0
        self._series: dict[tuple[str, str, str, int, bool, tuple[str, ...]], _Series] = {}

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
