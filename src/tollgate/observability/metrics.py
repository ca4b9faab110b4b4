"""Every Prometheus metric the gateway exports, defined once here: name, type, labels and buckets.

Nothing else in the package creates a metric, and no policy imports Prometheus: policies leave their
outcome in the request context (or expose counters of their own), and ``recorder.py`` turns those into
updates of the metrics below. ``docs/observability.md`` is the reference of these names; the Grafana
dashboards and Prometheus alert rules in ``deploy/`` use them, and a test checks that every name they
use is one the gateway exports.

Cardinality stays bounded: tenant labels are ``team`` and ``org`` (ids an admin created), never the key
or user id unless ``metrics.key_label`` / ``metrics.user_label`` say so; ``model`` is the model the client
asked for, capped at ``metrics.max_model_labels`` distinct values (the rest are ``other``); histograms
carry no tenant labels at all (each label set of a histogram costs one series per bucket).

Multiprocess: when ``PROMETHEUS_MULTIPROC_DIR`` is set in the environment *before the process starts*
(prometheus-client picks its value store at import), every worker writes its values to memory-mapped
files in that folder and ``/metrics`` merges all workers' files (``MultiProcessCollector``): counters
and histograms are summed, the in-flight gauge is summed over live workers, the info gauges take the
maximum over live workers. The folder must be empty at start, and a worker that exits should be marked
dead (``prometheus_client.multiprocess.mark_process_dead(pid)``, e.g. from gunicorn's ``child_exit``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from tollgate import __version__

# The classic text format every Prometheus (and Grafana Agent, VictoriaMetrics...) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Total latency of LLM calls: from tens of milliseconds (cache hits, small models) to minutes (long generations).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Time to the first byte of a stream: what a user waits before text appears.
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


def multiprocess_dir() -> str | None:
    """The multiprocess folder when prometheus-client runs in multiprocess mode, else ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


GaugeMode = Literal["livesum", "livemax"]


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One metric as documented: its name in the exposition (counters with ``_total``), type, labels, help."""

    name: str
    type: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str

    @property
    def sample_names(self) -> tuple[str, ...]:
        """The names its samples carry in the exposition (what PromQL selects)."""
        if self.type == "histogram":
            return (self.name + "_bucket", self.name + "_sum", self.name + "_count")
        return (self.name,)


class GatewayMetrics:
    """The gateway's metrics, registered in a registry of their own (one per gateway, so tests can run
    several gateways in one process; a server runs one)."""

    def __init__(self, *, key_label: bool = False, user_label: bool = False) -> None:
        # No ``*_created`` series: they double the series count and no dashboard or alert uses them.
        # (A process-wide switch of prometheus-client; set before any metric is made.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_dir() is not None
        if not self.multiprocess:  # per-process figures; meaningless merged over workers
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        tenant: tuple[str, ...] = ("team", "org")
        if user_label:
            tenant += ("user",)
        if key_label:
            tenant += ("key",)
        self.tenant_labels = tenant
        self.catalog: list[MetricInfo] = []

        # Requests: one count per finished request (probes and /metrics scrapes are not counted).
        self.requests = self._counter(
            "tollgate_requests",
            "Finished requests, by endpoint, requested model, provider that answered (empty when none was "
            "called) and status class (2xx, 4xx, 5xx; a client that went away is 4xx, status 499).",
            ("endpoint", "model", "provider", "status_class", *tenant),
        )
        self.request_errors = self._counter(
            "tollgate_request_errors",
            "Requests that ended in an error, by endpoint, provider, HTTP status and error type.",
            ("endpoint", "provider", "status", "error_type", *tenant),
        )
        self.request_duration = self._histogram(
            "tollgate_request_duration_seconds",
            "Total time from the request's arrival to its end (last byte of a stream), in seconds.",
            ("endpoint", "model", "provider", "stream"),
            buckets=LATENCY_BUCKETS,
        )
        self.time_to_first_byte = self._histogram(
            "tollgate_time_to_first_byte_seconds",
            "Streams only: time from the request's arrival to the first body byte sent to the client "
            "(the first token, as the client sees it), in seconds.",
            ("endpoint", "model", "provider"),
            buckets=TTFB_BUCKETS,
        )
        self.requests_in_flight = self._gauge(
            "tollgate_requests_in_flight",
            "Requests being handled right now (probes and /metrics scrapes excluded).",
            multiprocess_mode="livesum",
        )
        self.client_disconnects = self._counter(
            "tollgate_client_disconnects",
            "Requests whose client went away before the answer was complete (the upstream call was cancelled).",
            ("endpoint", "model", "provider", *tenant),
        )

        # Usage and cost.
        self.tokens = self._counter(
            "tollgate_tokens",
            "Tokens as the provider reported them (estimated when it did not), by type: input (prompt, "
            "cached included), output (completion), cached_input (the part of input served from the "
            "provider's prompt cache).",
            ("type", "model", "provider", *tenant),
        )
        self.cost = self._counter(
            "tollgate_cost_usd",
            "Cost of requests in US dollars, as priced for the ledger.",
            ("model", "provider", *tenant),
        )

        # Governance.
        self.rate_limit_rejections = self._counter(
            "tollgate_rate_limit_rejections",
            "Requests refused with 429 by the gateway's own rate limits (not the provider's).",
            ("endpoint", *tenant),
        )
        self.budget_rejections = self._counter(
            "tollgate_budget_rejections",
            "Requests refused because a budget of the caller's key, user, team or org was spent.",
            ("endpoint", *tenant),
        )

        # Providers and routing.
        self.provider_errors = self._counter(
            "tollgate_provider_errors",
            "Requests that ended in an error of the provider (its HTTP error, a timeout, a broken answer), "
            "by provider, HTTP status the client got and error type.",
            ("provider", "status", "error_type"),
        )
        self.retries = self._counter(
            "tollgate_retries",
            "Extra upstream attempts (attempts beyond the first) made for requests, labelled with the "
            "deployment that finally answered.",
            ("endpoint", "model", "provider", *tenant),
        )
        self.fallbacks = self._counter(
            "tollgate_fallbacks",
            "Requests answered (or finally failed) by a deployment other than the route's first choice.",
            ("endpoint", "model", "provider", *tenant),
        )

        # Routing, per deployment. ``deployment`` is ``provider/model`` of a deployment the config declares
        # (``other`` for direct provider/model addresses clients named), so the series stay bounded.
        self.routing_decisions = self._counter(
            "tollgate_routing_decisions",
            "Requests that went through routing, by requested model, the deployment that answered (or failed "
            "last; empty when none was called), the traffic-split arm (empty without a split) and outcome: "
            "primary (the strategy's first choice answered), fallback (another deployment answered), failed "
            "(an error was returned), unavailable (every deployment was skipped), cancelled (the client left).",
            ("endpoint", "model", "deployment", "arm", "outcome"),
        )
        self.deployment_calls = self._counter(
            "tollgate_deployment_calls",
            "Upstream calls per deployment (every attempt: retries and fallbacks included), by outcome: "
            "success, retryable_error (429, 5xx, timeout, connection) or error (not retryable, e.g. 400).",
            ("deployment", "outcome"),
        )
        self.deployment_retries = self._counter(
            "tollgate_deployment_retries",
            "Same-deployment retries (after a backoff or a short Retry-After), by deployment.",
            ("deployment",),
        )
        self.deployment_fallbacks = self._counter(
            "tollgate_deployment_fallbacks",
            "Times a deployment failed with a retryable error and the request moved on to the next candidate.",
            ("deployment",),
        )
        self.deployment_skips = self._counter(
            "tollgate_deployment_skips",
            "Candidates passed over without a call, by deployment and reason (breaker_open, max_concurrency; "
            "queue_full, queue_timeout when waiting in a priority queue failed).",
            ("deployment", "reason"),
        )
        self.breaker_transitions = self._counter(
            "tollgate_breaker_transitions",
            "Circuit-breaker transitions, by deployment and the state entered (open, half_open, closed).",
            ("deployment", "state"),
        )
        self.breaker_state = self._gauge(
            "tollgate_breaker_state",
            "Circuit-breaker state per deployment: 0 closed, 1 half-open, 2 open (the worst over workers).",
            ("deployment",),
            multiprocess_mode="livemax",
        )
        self.deployment_in_flight = self._gauge(
            "tollgate_deployment_in_flight",
            "Upstream calls in flight per deployment (streams until their end).",
            ("deployment",),
            multiprocess_mode="livesum",
        )

        self.shadow_calls = self._counter(
            "tollgate_shadow_calls",
            "Shadow (mirrored) calls to candidate deployments, by candidate and outcome: success, error, or "
            "dropped (sampled but not sent: the model's shadow concurrency cap was reached).",
            ("deployment", "outcome"),
        )

        # Cache and guardrails: defined now so dashboards and alerts can use them; the cache and guardrail
        # work increments them (through the recorder, from their slots in the request context).
        self.cache_lookups = self._counter(
            "tollgate_cache_lookups",
            "Response-cache lookups, by kind (exact, semantic) and result (hit, miss).",
            ("kind", "result", *tenant),
        )
        self.guardrail_decisions = self._counter(
            "tollgate_guardrail_decisions",
            "Guardrail decisions, one per decision and rule (rule id or entity type) that fired, by guardrail, "
            "phase (input, output) and action (mask, redact, hash, block, flag). Requests a guard let through "
            "untouched are not counted here.",
            ("guardrail", "rule", "phase", "action", *tenant),
        )

        # Background parts, sampled from their own counters (at most once a second, and at each scrape).
        self.ledger_queue_depth = self._gauge(
            "tollgate_ledger_queue_depth",
            "Ledger rows waiting in memory to be written to the database.",
            multiprocess_mode="livesum",
        )
        self.ledger_rows = self._counter(
            "tollgate_ledger_rows",
            "Ledger rows by outcome: written (to the database) or spooled (to the local spool file, "
            "replayed when the database answers again).",
            ("outcome",),
        )
        self.ledger_write_failures = self._counter(
            "tollgate_ledger_write_failures", "Failed batch writes of ledger rows to the database."
        )
        self.rate_limit_store_fallbacks = self._counter(
            "tollgate_rate_limit_store_fallbacks",
            "Rate-limit operations served by the in-process fallback because Redis was unreachable (fail open).",
        )
        self.rate_limit_store_errors = self._counter(
            "tollgate_rate_limit_store_errors",
            "Calls to the rate-limit store (Redis) that failed because it was unreachable.",
        )
        self.guardrail_audit_records = self._counter(
            "tollgate_guardrail_audit_records",
            "Audit records of guardrail decisions by outcome: written (to the audit log) or dropped (the "
            "writer's queue was full because the database did not answer).",
            ("outcome",),
        )
        self.rate_limit_unavailable = self._counter(
            "tollgate_rate_limit_unavailable",
            "Requests refused with 503 because the rate-limit store was unreachable (fail closed).",
        )
        self.secret_refresh_failures = self._counter(
            "tollgate_secret_refresh_failures",
            "Secret reads (Vault, files) that failed at a refresh; the last good value stayed in force.",
        )
        self.secret_rotations = self._counter(
            "tollgate_secret_rotations", "Secret values found changed at a refresh (then applied by a config reload)."
        )
        self.routing_sync_errors = self._counter(
            "tollgate_routing_sync_errors",
            "Failed exchanges of shared routing state (breaker transitions, latency averages) with Redis; "
            "meanwhile this replica routes on its own state.",
        )
        self.semantic_embedding_failures = self._counter(
            "tollgate_semantic_cache_embedding_failures",
            "Semantic-cache embeddings calls to a provider (cache.semantic.embedder: provider) that failed, timed "
            "out or returned no vector; each such lookup was answered as a miss.",
        )
        self.langfuse_events = self._counter(
            "tollgate_langfuse_events",
            "Events sent to Langfuse (a trace and a generation per model call), by outcome: exported (accepted) "
            "or rejected (refused per event in a 207 answer, or in a batch refused with a 4xx; not retried).",
            ("outcome",),
        )
        self.langfuse_generations_dropped = self._counter(
            "tollgate_langfuse_generations_dropped",
            "Model calls never delivered to Langfuse: the export queue was full (Langfuse slow or down), the "
            "exporter had stopped, or their batch was lost after the last retry.",
        )
        self.langfuse_batch_failures = self._counter(
            "tollgate_langfuse_batch_failures",
            "Batches to Langfuse that failed: lost after the last retry (network error, 429, 5xx) or refused "
            "whole with a 4xx (wrong keys or host).",
        )

        # What is running.
        self.build_info = self._gauge(
            "tollgate_build_info",
            "Always 1; the labels say which Tollgate and Python are running.",
            ("version", "python"),
            multiprocess_mode="livemax",
        )
        self.config_info = self._gauge(
            "tollgate_config_info",
            "1 for the config version in use (0 for one replaced by a reload).",
            ("config_version",),
            multiprocess_mode="livemax",
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)

    def _counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        self.catalog.append(MetricInfo(name + "_total", "counter", tuple(labels), help))
        return Counter(name, help, labels, registry=self.registry)

    def _gauge(self, name: str, help: str, labels: Sequence[str] = (), *, multiprocess_mode: GaugeMode) -> Gauge:
        self.catalog.append(MetricInfo(name, "gauge", tuple(labels), help))
        return Gauge(name, help, labels, registry=self.registry, multiprocess_mode=multiprocess_mode)

    def _histogram(self, name: str, help: str, labels: Sequence[str], *, buckets: Sequence[float]) -> Histogram:
        self.catalog.append(MetricInfo(name, "histogram", tuple(labels), help))
        return Histogram(name, help, labels, buckets=buckets, registry=self.registry)

    def render(self) -> bytes:
        """The exposition text: this registry, or every worker's files merged in multiprocess mode."""
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
