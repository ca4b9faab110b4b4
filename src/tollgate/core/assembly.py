"""Assemble the gateway from config: storage, counters, prices, and the policies in phase order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings
from tollgate.core.gateway import Gateway
from tollgate.core.reload import ConfigWatcher, Reloader
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport, demo_handler
from tollgate.observability.metrics import GatewayMetrics
from tollgate.observability.recorder import MetricsRecorder, StateReadings
from tollgate.observability.tracing import Tracing, wanted
from tollgate.policies.budget import BudgetPolicy
from tollgate.policies.budget_alerts import BudgetAlerts
from tollgate.policies.cache import CachePolicy
from tollgate.policies.caps import CapsPolicy
from tollgate.policies.injection import CodeGuardPolicy, InjectionPolicy
from tollgate.policies.ledger import SPOOL_FILE, LedgerPolicy
from tollgate.policies.model_access import ModelAccessPolicy
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.policies.output_schema import OutputSchemaPolicy
from tollgate.policies.pii import PIIPolicy
from tollgate.policies.pricing import UnpricedModelPolicy
from tollgate.policies.rate_limit import RateLimitPolicy
from tollgate.policies.reservation import ReservationPolicy
from tollgate.policies.webhook_guard import WebhookGuardPolicy
from tollgate.pricing import PriceBook
from tollgate.state.cache import open_cache_store
from tollgate.state.counters import open_counter_store
from tollgate.state.factory import open_storage
from tollgate.state.invalidation import open_invalidation_bus


def build_gateway(
    config: TollgateConfig,
    env: Mapping[str, str],
    settings: StaticSettings,
    master_key: str,
    config_path: str | Path | None = None,
) -> Gateway:
    storage = open_storage(settings.database_url, migrate=config.storage.migrate_on_start)
    gateway = Gateway(
        Snapshot(config, env), Transport({"demo": demo_handler}), storage, master_key, settings.max_body_bytes
    )
    rl = config.rate_limits
    counters = open_counter_store(
        rl.counter_url, fail_open=rl.fail_open, timeout_seconds=rl.redis_timeout_seconds, key_prefix=rl.key_prefix
    )
    rate_limits = RateLimitPolicy(counters, rl)
    prices = PriceBook(config.pricing)
    # A worker of `serve --workers N` gets a spool file of its own (tollgate/server.py).
    spool = settings.data_dir / (env.get("TOLLGATE_LEDGER_SPOOL_FILE") or SPOOL_FILE)
    ledger = LedgerPolicy(storage.ledger, prices, spool)
    # Budgets share the rate limiter's counter store (and its fail_open): docs/budgets.md.
    budgets = BudgetPolicy(counters, prices, config.budgets, alerts=BudgetAlerts(counters, config.budgets.alerts))
    # ADMIT order: the allow-list first (a forbidden model must not consume the caller's limits), then
    # the price check (an unpriced model is refused before it is counted), then the limits and the budget
    # in one atomic reservation (one store round trip; a request a rate limit refuses holds no budget,
    # even for a moment, and gets the rate limit's 429): policies/reservation.py.
    reservations = ReservationPolicy(counters, (rate_limits, budgets))
    gateway.admit_policies = (ModelAccessPolicy(), UnpricedModelPolicy(prices), reservations)
    # Streams of callers with a budget go through canonical chunks, so they can be cut at the budget.
    gateway.stream_filters = (budgets,)
    # FINALIZE order: the ledger first, since it prices the request (ctx.cost_usd) for what follows.
    gateway.finalize_policies = (ledger, rate_limits, budgets)
    if config.guardrails.pii.enabled:
        pii = PIIPolicy(config.guardrails.pii)
        gateway.inspect_policies = (pii,)
        gateway.respond_policies = (pii,)
        # The PII restorer first: the budget cut then counts what the client actually receives.
        gateway.stream_filters = (pii, budgets)
        gateway.finalize_policies += (pii,)  # drops the request's mapping
    if config.guardrails.injection.enabled:  # after PII masking: it scores what the provider would see
        injection = InjectionPolicy(config.guardrails.injection)
        gateway.inspect_policies += (injection,)
        gateway.finalize_policies += (injection,)
    if config.guardrails.code.enabled:
        code = CodeGuardPolicy(config.guardrails.code)
        gateway.inspect_policies += (code,)
        gateway.finalize_policies += (code,)
    if config.guardrails.caps.enabled:
        # Token caps are a cheap rejection: before the limits and the budget reserve anything, and they
        # reserve for the clamped max_tokens. INSPECT writes the cap into the body.
        caps = CapsPolicy(config.guardrails.caps)
        gateway.admit_policies = (*(p for p in gateway.admit_policies if p is not reservations), caps, reservations)
        gateway.inspect_policies += (caps,)
        gateway.finalize_policies += (caps,)
    if config.guardrails.output_filter.enabled:
        # After the PII restorer (it screens what the caller would see), before the budget cut. Installed only
        # when on: any stream filter rules out relaying the provider's bytes.
        output_filter = OutputFilterPolicy(config.guardrails.output_filter)
        gateway.respond_policies += (output_filter,)
        gateway.stream_filters = (*(f for f in gateway.stream_filters if f is not budgets), output_filter, budgets)
    if config.guardrails.output_schema.enabled:
        # After the output filter: it validates the answer the caller gets. Its stream filter is built only for
        # requests that ask for a JSON schema, so other streams keep the relay fast path.
        schema = OutputSchemaPolicy(config.guardrails.output_schema)
        gateway.respond_policies += (schema,)
        gateway.finalize_policies += (schema,)  # forgets the request's retry count
        gateway.stream_filters = (*(f for f in gateway.stream_filters if f is not budgets), schema, budgets)
    webhook: WebhookGuardPolicy | None = None
    if config.guardrails.webhook.enabled:
        # Last in INSPECT: the service sees what the provider would (masked, capped); after every other output
        # policy in RESPOND (non-streamed answers only).
        webhook = WebhookGuardPolicy(config.guardrails.webhook)
        if config.guardrails.webhook.on_request:
            gateway.inspect_policies += (webhook,)
        if config.guardrails.webhook.on_response:
            gateway.review_policies = (webhook,)
    # Revocation fan-out rides on the counters' Redis (in-process without one): docs/distributed.md.
    bus = open_invalidation_bus(rl.counter_url, timeout_seconds=rl.redis_timeout_seconds)
    gateway.authenticator.attach(bus)
    gateway.services = (bus, ledger, rate_limits, budgets)
    gateway.closers = (counters.close,)
    if webhook is not None:
        gateway.closers += (webhook.close,)
    cc = config.cache
    # The exact cache shares the counters' Redis unless it names its own store (docs/caching.md).
    cache_store = open_cache_store(
        cc.url or rl.counter_url,
        max_entries=cc.max_entries,
        max_bytes=cc.max_bytes,
        key_prefix=cc.key_prefix,
        timeout_seconds=cc.redis_timeout_seconds,
    )
    gateway.cache = CachePolicy(cache_store, cc, prices)
    close_cache = getattr(cache_store, "aclose", None)
    if close_cache is not None:
        gateway.closers += (close_cache,)
    if config_path is not None:
        # Hot reload of the file this gateway was started from (core/reload.py).
        gateway.reloader = Reloader(gateway, config_path, env, prices)
        if config.server.watch_config:
            gateway.services += (ConfigWatcher(gateway.reloader, config.server.watch_interval_seconds),)
    if wanted(config.tracing.enabled, env):
        tracer = gateway.tracing = Tracing(env=env)

        async def flush_traces() -> None:
            await asyncio.to_thread(tracer.shutdown)

        gateway.closers += (flush_traces,)
    mc = config.metrics
    if mc.enabled:
        # Metrics last in FINALIZE: they see what every other policy recorded (the ledger's cost).
        readings = StateReadings(
            ledger_queue_depth=lambda: ledger.queued,
            ledger_rows_written=lambda: ledger.written,
            ledger_rows_spooled=lambda: ledger.spooled,
            ledger_write_failures=lambda: ledger.failures,
            rate_limit_store_fallbacks=lambda: int(getattr(counters, "fallbacks", 0)),  # Redis store only
            rate_limit_store_errors=lambda: int(getattr(counters, "errors", 0)),
            rate_limit_unavailable=lambda: rate_limits.unavailable,
        )
        metrics = GatewayMetrics(key_label=mc.key_label, user_label=mc.user_label)
        recorder = MetricsRecorder(
            metrics,
            config_version=gateway.snapshot.version,
            readings=readings,
            max_model_labels=mc.max_model_labels,
            require_auth=mc.require_auth,
        )
        gateway.finalize_policies += (recorder,)
    return gateway
