"""MetricsRecorder: each finished request context becomes the right metric updates, with bounded labels."""

from __future__ import annotations

import pytest

from tollgate.context import Principal, RequestContext
from tollgate.observability.metrics import GatewayMetrics
from tollgate.observability.recorder import MetricsRecorder, StateReadings
from tollgate.providers.base import Deployment
from tollgate.wire.openai import Usage

OPENAI = Deployment("openai", "openai", "gpt-4o-mini", "http://upstream/v1")
AZURE = Deployment("azure-eu", "azure", "gpt-4o-mini", "http://azure")
ALICE = Principal(key_id="k1", name="alice", role="user", user_id="u1", team_id="t-search", org_id="o-acme")


def _ctx(
    *,
    principal: Principal | None = ALICE,
    model: str | None = "fast",
    deployment: Deployment | None = OPENAI,
    status: int = 200,
    error_type: str | None = None,
    endpoint: str = "chat",
    version: str = "v1",
) -> RequestContext:
    ctx = RequestContext(request_id="r", front_door="openai", endpoint=endpoint, config_version=version)
    ctx.principal, ctx.requested_model, ctx.deployment = principal, model, deployment
    ctx.status, ctx.error_type = status, error_type
    if deployment is not None:
        ctx.attempts = 1
    return ctx


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics()


@pytest.fixture
def recorder(metrics: GatewayMetrics) -> MetricsRecorder:
    return MetricsRecorder(metrics, config_version="v1")


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


TENANT = {"team": "t-search", "org": "o-acme"}


def test_a_successful_request_counts_tokens_cost_and_latency(
    metrics: GatewayMetrics, recorder: MetricsRecorder
) -> None:
    ctx = _ctx()
    ctx.usage = Usage(prompt_tokens=12, completion_tokens=30, cached_tokens=4)
    ctx.cost_usd = 0.0025
    ctx.started -= 0.2  # it took about 200 ms
    recorder.on_finalize(ctx)
    req = {"endpoint": "chat", "model": "fast", "provider": "openai"}
    assert value(metrics, "tollgate_requests_total", **req, status_class="2xx", **TENANT) == 1
    assert value(metrics, "tollgate_tokens_total", type="input", model="fast", provider="openai", **TENANT) == 12
    assert value(metrics, "tollgate_tokens_total", type="output", model="fast", provider="openai", **TENANT) == 30
    assert value(metrics, "tollgate_tokens_total", type="cached_input", model="fast", provider="openai", **TENANT) == 4
    assert value(metrics, "tollgate_cost_usd_total", model="fast", provider="openai", **TENANT) == pytest.approx(0.0025)
    hist = {**req, "stream": "false"}
    assert value(metrics, "tollgate_request_duration_seconds_count", **hist) == 1
    assert 0.2 <= value(metrics, "tollgate_request_duration_seconds_sum", **hist) < 5
    assert value(metrics, "tollgate_request_duration_seconds_bucket", **hist, le="0.1") == 0
    assert value(metrics, "tollgate_request_duration_seconds_bucket", **hist, le="0.25") == 1
    # Nothing went wrong, so none of the failure counters has a series.
    for name in ("tollgate_request_errors_total", "tollgate_retries_total", "tollgate_fallbacks_total"):
        assert not [s for m in metrics.registry.collect() for s in m.samples if s.name == name]
    # Non-streams have no time to first byte.
    assert value(metrics, "tollgate_time_to_first_byte_seconds_count", **req) == 0


def test_streams_record_time_to_first_byte(metrics: GatewayMetrics, recorder: MetricsRecorder) -> None:
    ctx = _ctx()
    ctx.stream = True
    ctx.first_byte_at = ctx.started + 0.3
    recorder.on_finalize(ctx)
    labels = {"endpoint": "chat", "model": "fast", "provider": "openai"}
    assert value(metrics, "tollgate_time_to_first_byte_seconds_count", **labels) == 1
    assert value(metrics, "tollgate_time_to_first_byte_seconds_sum", **labels) == pytest.approx(0.3)
    assert value(metrics, "tollgate_time_to_first_byte_seconds_bucket", **labels, le="0.25") == 0
    assert value(metrics, "tollgate_time_to_first_byte_seconds_bucket", **labels, le="0.5") == 1
    assert value(metrics, "tollgate_request_duration_seconds_count", **labels, stream="true") == 1


def test_gateway_rate_limit_rejection_is_not_a_provider_error(
    metrics: GatewayMetrics, recorder: MetricsRecorder
) -> None:
    recorder.on_finalize(_ctx(deployment=None, status=429, error_type="rate_limit_error"))
    assert value(metrics, "tollgate_rate_limit_rejections_total", endpoint="chat", **TENANT) == 1
    assert (
        value(
            metrics, "tollgate_requests_total", endpoint="chat", model="fast", provider="", status_class="4xx", **TENANT
        )
        == 1
    )
    err = {"endpoint": "chat", "provider": "", "status": "429", "error_type": "rate_limit_error"}
    assert value(metrics, "tollgate_request_errors_total", **err, **TENANT) == 1
    # The provider's own 429 is a provider error, not one of the gateway's rejections.
    recorder.on_finalize(_ctx(status=429, error_type="rate_limit_error"))
    assert value(metrics, "tollgate_rate_limit_rejections_total", endpoint="chat", **TENANT) == 1
    assert (
        value(metrics, "tollgate_provider_errors_total", provider="openai", status="429", error_type="rate_limit_error")
        == 1
    )


def test_budget_rejection(metrics: GatewayMetrics, recorder: MetricsRecorder) -> None:
    recorder.on_finalize(_ctx(deployment=None, status=402, error_type="insufficient_quota"))
    assert value(metrics, "tollgate_budget_rejections_total", endpoint="chat", **TENANT) == 1
    assert value(metrics, "tollgate_rate_limit_rejections_total", endpoint="chat", **TENANT) == 0


@pytest.mark.parametrize(
    ("status", "error_type", "provider_error"),
    [
        (502, "upstream_error", True),
        (504, "timeout_error", True),
        (400, "invalid_request_error", False),  # the provider rejected the caller's request: not its failure
        (500, "api_error", False),  # the gateway's own failure
        (499, None, False),  # the client went away
    ],
)
def test_provider_errors_are_the_providers_failures_only(
    metrics: GatewayMetrics, recorder: MetricsRecorder, status: int, error_type: str | None, provider_error: bool
) -> None:
    recorder.on_finalize(_ctx(status=status, error_type=error_type))
    got = value(
        metrics, "tollgate_provider_errors_total", provider="openai", status=str(status), error_type=error_type or ""
    )
    assert got == (1 if provider_error else 0)
    err = {"endpoint": "chat", "provider": "openai", "status": str(status), "error_type": error_type or ""}
    assert value(metrics, "tollgate_request_errors_total", **err, **TENANT) == 1


def test_retries_fallbacks_and_disconnects(metrics: GatewayMetrics, recorder: MetricsRecorder) -> None:
    ctx = _ctx(deployment=AZURE)
    ctx.attempts, ctx.fallback = 3, True
    recorder.on_finalize(ctx)
    gone = _ctx(status=499)
    gone.client_disconnected = True
    recorder.on_finalize(gone)
    labels = {"endpoint": "chat", "model": "fast", **TENANT}
    assert value(metrics, "tollgate_retries_total", provider="azure-eu", **labels) == 2
    assert value(metrics, "tollgate_fallbacks_total", provider="azure-eu", **labels) == 1
    assert value(metrics, "tollgate_client_disconnects_total", provider="openai", **labels) == 1
    assert value(metrics, "tollgate_requests_total", provider="openai", status_class="4xx", **labels) == 1


def test_requests_without_principal_or_tenant_have_empty_tenant_labels(
    metrics: GatewayMetrics, recorder: MetricsRecorder
) -> None:
    recorder.on_finalize(
        _ctx(principal=None, model=None, deployment=None, status=401, error_type="invalid_request_error")
    )
    lone = Principal(key_id="k2", name="lone", role="user")
    recorder.on_finalize(_ctx(principal=lone))
    base = {"endpoint": "chat", "team": "", "org": ""}
    assert value(metrics, "tollgate_requests_total", **base, model="", provider="", status_class="4xx") == 1
    assert value(metrics, "tollgate_requests_total", **base, model="fast", provider="openai", status_class="2xx") == 1


def test_key_and_user_ids_are_labels_only_when_configured() -> None:
    default = GatewayMetrics()
    MetricsRecorder(default).on_finalize(_ctx())
    names = {name for m in default.registry.collect() for s in m.samples for name in s.labels}
    assert "key" not in names and "user" not in names
    assert {"team", "org"} <= names

    detailed = GatewayMetrics(key_label=True, user_label=True)
    MetricsRecorder(detailed).on_finalize(_ctx())
    labels = {"endpoint": "chat", "model": "fast", "provider": "openai", "status_class": "2xx", **TENANT}
    assert value(detailed, "tollgate_requests_total", **labels, user="u1", key="k1") == 1


def test_model_labels_are_bounded(metrics: GatewayMetrics) -> None:
    recorder = MetricsRecorder(metrics, max_model_labels=2)
    # A name that resolved to no model is whatever the client typed: never a label value.
    recorder.on_finalize(_ctx(model="typo-model", deployment=None, status=404, error_type="invalid_request_error"))
    for name in ("a", "b", "c", "d", "a"):
        recorder.on_finalize(_ctx(model=name))
    models: dict[str, float] = {}
    for m in metrics.registry.collect():
        for s in m.samples:
            if s.name == "tollgate_requests_total":
                models[s.labels["model"]] = models.get(s.labels["model"], 0.0) + s.value
    assert models == {"other": 3.0, "a": 2.0, "b": 1.0}


def test_config_version_info_follows_reloads(metrics: GatewayMetrics, recorder: MetricsRecorder) -> None:
    assert value(metrics, "tollgate_config_info", config_version="v1") == 1
    recorder.on_finalize(_ctx(version="v2"))
    assert value(metrics, "tollgate_config_info", config_version="v1") == 0
    assert value(metrics, "tollgate_config_info", config_version="v2") == 1
    build = [s for m in metrics.registry.collect() for s in m.samples if s.name == "tollgate_build_info"]
    assert len(build) == 1 and build[0].value == 1 and build[0].labels["version"]


class Source:
    """Stands in for a background part's counters (the ledger writer, the rate-limit store)."""

    def __init__(self) -> None:
        self.written = 0
        self.queued = 0
        self.fallbacks = 0

    def broken(self) -> int:
        raise RuntimeError("gone")


def test_background_counters_are_sampled_as_deltas(metrics: GatewayMetrics) -> None:
    src = Source()
    readings = StateReadings(
        ledger_queue_depth=lambda: src.queued,
        ledger_rows_written=lambda: src.written,
        rate_limit_store_fallbacks=lambda: src.fallbacks,
        rate_limit_store_errors=src.broken,  # a failing reading is skipped, never raised
    )
    recorder = MetricsRecorder(metrics, readings=readings)
    src.written, src.queued, src.fallbacks = 5, 7, 1
    recorder.sample()
    assert value(metrics, "tollgate_ledger_rows_total", outcome="written") == 5
    assert value(metrics, "tollgate_ledger_queue_depth") == 7
    assert value(metrics, "tollgate_rate_limit_store_fallbacks_total") == 1
    src.written, src.queued = 8, 0
    recorder.sample()
    assert value(metrics, "tollgate_ledger_rows_total", outcome="written") == 8
    assert value(metrics, "tollgate_ledger_queue_depth") == 0
    # FINALIZE samples too (at most once a second): the first request does.
    src.written = 9
    recorder.on_finalize(_ctx())
    assert value(metrics, "tollgate_ledger_rows_total", outcome="written") == 9
