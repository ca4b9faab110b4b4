"""Assemble the gateway from config: storage, counters, prices, and the policies in phase order."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings
from tollgate.core.gateway import Gateway
from tollgate.core.reload import ConfigWatcher, Reloader
from tollgate.core.secret_refresh import SecretRefresher
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport, demo_handler
from tollgate.observability.langfuse import LangfuseExporter
from tollgate.observability.metrics import GatewayMetrics
from tollgate.observability.recorder import MetricsRecorder, RoutingReadings, StateReadings
from tollgate.observability.tracing import Tracing, wanted
from tollgate.policies.budget import BudgetPolicy
from tollgate.policies.budget_alerts import BudgetAlerts
from tollgate.policies.cache import CachePolicy
from tollgate.policies.caps import CapsPolicy
from tollgate.policies.guardrail_audit import GuardrailAuditPolicy
from tollgate.policies.injection import CodeGuardPolicy, InjectionPolicy
from tollgate.policies.ledger import SPOOL_FILE, LedgerPolicy
from tollgate.policies.model_access import ModelAccessPolicy
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.policies.output_schema import OutputSchemaPolicy
from tollgate.policies.pii import PIIPolicy
from tollgate.policies.pricing import UnpricedModelPolicy
from tollgate.policies.rate_limit import RateLimitPolicy
from tollgate.policies.reservation import ReservationPolicy
from tollgate.policies.shadow import ShadowPolicy
from tollgate.policies.webhook_guard import WebhookGuardPolicy
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment
from tollgate.routing.shared import SharedRouting
from tollgate.state.cache import open_cache_store
from tollgate.state.counters import open_counter_store
from tollgate.state.factory import open_storage
from tollgate.state.invalidation import open_invalidation_bus
from tollgate.state.routing_bus import RedisRoutingBus, is_redis_url
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage


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
    gateway.log_bodies = config.server.log_bodies
    gateway.log_body_max_bytes = config.server.log_body_max_bytes
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
    # It leaves every budget level it learns in the gateway's table, for budget_remaining routing rules.
    budgets = BudgetPolicy(
        counters,
        prices,
        config.budgets,
        alerts=BudgetAlerts(counters, config.budgets.alerts),
        levels=gateway.budget_levels,
    )
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
    guard_audit: GuardrailAuditPolicy | None = None
    if config.guardrails.audit.enabled:  # one audit record per decision any guard left in the context
        guard_audit = GuardrailAuditPolicy(storage.audit, max_queue=config.guardrails.audit.max_queue)
        gateway.finalize_policies += (guard_audit,)

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

    # Shadow traffic (policies/shadow.py): the last admit policy (it samples admitted requests), the first
    # respond policy and stream filter (it keeps the provider's own answer), after the ledger in FINALIZE.
    async def shadow_call(dep: Deployment, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        done = await gateway.dispatcher.shadow(dep, req)
        return done.data, done.usage

    shadow = gateway.shadow = ShadowPolicy(
        lambda: gateway.snapshot.shadows, shadow_call, ledger, gateway.routing_state.events
    )
    gateway.admit_policies += (shadow,)
    gateway.respond_policies = (shadow, *gateway.respond_policies)
    gateway.stream_filters = (shadow, *gateway.stream_filters)
    gateway.finalize_policies += (shadow,)  # after the ledger: it reads the primary's priced cost
    # Revocation fan-out rides on the counters' Redis (in-process without one): docs/distributed.md.
    bus = open_invalidation_bus(rl.counter_url, timeout_seconds=rl.redis_timeout_seconds)
    gateway.authenticator.attach(bus)
    gateway.services = (bus, ledger, rate_limits, budgets, shadow)
    if guard_audit is not None:
        gateway.services += (guard_audit,)
    # Breaker transitions and latency averages shared across replicas on the same Redis (docs/routing.md).
    shared_state = config.routing.shared_state
    routing_bus: RedisRoutingBus | None = None
    if shared_state.enabled and rl.counter_url is not None and is_redis_url(rl.counter_url):
        routing_bus = RedisRoutingBus(
            rl.counter_url,
            key_prefix=shared_state.key_prefix,
            interval=shared_state.interval_seconds,
            clock=lambda: gateway.routing_state.clock(),  # the state's clock, even if a test swaps it
            timeout_seconds=rl.redis_timeout_seconds,
        )
        routing_bus.attach(
            SharedRouting(gateway.routing_state, routing_bus, stale_seconds=3 * shared_state.interval_seconds)
        )
        gateway.services += (routing_bus,)
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
    semantic = None
    cache_on = cc.enabled or any(m.enabled for m in cc.models.values())
    # The embedding model loads only when some cached model can use it.
    if cache_on and (cc.semantic.enabled or any(m.semantic for m in cc.models.values())):
        # Imported only when on: the embedding runtime (numpy, onnxruntime) costs a gateway without it nothing.
        from tollgate.policies.semantic_cache import SemanticCache

        store_url = cc.url or rl.counter_url
        shared = store_url is not None and store_url.startswith(("redis://", "rediss://", "unix://"))
        semantic = SemanticCache(
            cc.semantic,
            redis_url=store_url if shared else None,
            key_prefix=cc.key_prefix,
            timeout_seconds=cc.redis_timeout_seconds,
            data_dir=settings.data_dir,
        )
        gateway.services += (semantic,)
    gateway.cache = CachePolicy(cache_store, cc, prices, semantic=semantic)
    close_cache = getattr(cache_store, "aclose", None)
    if close_cache is not None:
        gateway.closers += (close_cache,)
    store = config.secret_store
    if config_path is not None:
        # Hot reload of the file this gateway was started from (core/reload.py).
        gateway.reloader = Reloader(gateway, config_path, env, prices, store)
        if config.server.watch_config:
            gateway.services += (ConfigWatcher(gateway.reloader, config.server.watch_interval_seconds),)
        if store is not None and config.secrets.refresh_seconds > 0:
            # Rotation without restart: changed ${file:...}/${vault:...} secrets are applied by a reload.
            refresher = SecretRefresher(store, gateway.reloader, config.secrets.refresh_seconds)
            gateway.services += (refresher,)
    if wanted(config.tracing.enabled, env):
        tracer = gateway.tracing = Tracing(env=env)

        async def flush_traces() -> None:
            await asyncio.to_thread(tracer.shutdown)

        gateway.closers += (flush_traces,)
    langfuse: LangfuseExporter | None = None
    if config.langfuse.enabled:
        # FINALIZE after the ledger (it prices the call); a service so its queue is flushed at shutdown.
        langfuse = LangfuseExporter(config.langfuse)
        gateway.finalize_policies += (langfuse,)
        gateway.services += (langfuse,)
        if config.langfuse.capture_content:
            # What the provider saw and wrote: last in INSPECT (after PII masking), first in RESPOND and
            # first among stream filters (before PII placeholders are restored).
            gateway.inspect_policies += (langfuse,)
            gateway.respond_policies = (langfuse, *gateway.respond_policies)
            gateway.stream_filters = (langfuse, *gateway.stream_filters)
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
            guardrail_audit_written=(lambda: guard_audit.written) if guard_audit is not None else None,
            guardrail_audit_dropped=(lambda: guard_audit.dropped) if guard_audit is not None else None,
            secret_refresh_failures=lambda: store.failures if store is not None else 0,
            secret_rotations=lambda: store.rotations if store is not None else 0,
            routing_sync_errors=(lambda: routing_bus.errors) if routing_bus is not None else None,
            langfuse_exported=(lambda: langfuse.exported) if langfuse is not None else None,
            langfuse_rejected=(lambda: langfuse.rejected) if langfuse is not None else None,
            langfuse_dropped=(lambda: langfuse.dropped) if langfuse is not None else None,
            langfuse_batch_failures=(lambda: langfuse.failed_batches) if langfuse is not None else None,
        )
        metrics = GatewayMetrics(key_label=mc.key_label, user_label=mc.user_label)
        recorder = MetricsRecorder(
            metrics,
            config_version=gateway.snapshot.version,
            readings=readings,
            max_model_labels=mc.max_model_labels,
            require_auth=mc.require_auth,
            routing=RoutingReadings(gateway.routing_state, lambda: gateway.snapshot.deployment_keys),
        )
        gateway.finalize_policies += (recorder,)
    return gateway
