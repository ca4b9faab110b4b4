"""Assemble the gateway from config: storage, counters, prices, and the policies in phase order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tollgate.config.guardrails import DEFAULT_PROFILE, GuardrailsConfig
from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings
from tollgate.core.gateway import Gateway
from tollgate.core.phases import (
    AdmitPolicy,
    FinalizePolicy,
    InspectPolicy,
    RespondPolicy,
    ReviewPolicy,
    StreamFilterFactory,
)
from tollgate.core.pipeline import Pipeline, Pipelines
from tollgate.core.reload import ConfigWatcher, Reloader
from tollgate.core.secret_refresh import SecretRefresher
from tollgate.core.snapshot import Snapshot
from tollgate.core.sso import SingleSignOn
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
    guard_audit: GuardrailAuditPolicy | None = None
    if config.guardrails.audit.enabled:  # one audit record per decision any guard left in the context
        guard_audit = GuardrailAuditPolicy(storage.audit, max_queue=config.guardrails.audit.max_queue)

    # Shadow traffic (policies/shadow.py): the last admit policy (it samples admitted requests), the first
    # respond policy and stream filter (it keeps the provider's own answer), after the ledger in FINALIZE.
    async def shadow_call(dep: Deployment, req: ChatRequest) -> tuple[JSONObject, Usage | None]:
        done = await gateway.dispatcher.shadow(dep, req)
        return done.data, done.usage

    shadow = gateway.shadow = ShadowPolicy(
        lambda: gateway.snapshot.shadows, shadow_call, ledger, gateway.routing_state.events
    )
    composer = PipelineComposer(
        admit=(ModelAccessPolicy(), UnpricedModelPolicy(prices)),
        reservations=reservations,
        budgets=budgets,
        finalize=(ledger, rate_limits, budgets),
        shadow=shadow,
        guard_audit=guard_audit,
    )
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
    cache_on = cc.enabled or any(m.enabled for m in cc.models.values()) or any(t.enabled for t in cc.teams.values())
    # The embedding model loads only when some cached model can use it.
    overridden = any(m.semantic for m in cc.models.values()) or any(t.semantic for t in cc.teams.values())
    if cache_on and (cc.semantic.enabled or overridden):
        # Imported only when on: the embedding runtime (numpy, onnxruntime) costs a gateway without it nothing.
        from tollgate.core.cache_embeddings import provider_embed
        from tollgate.policies.semantic_cache import SemanticCache

        store_url = cc.url or rl.counter_url
        shared = store_url is not None and store_url.startswith(("redis://", "rediss://", "unix://"))
        embedding_model = cc.semantic.embedding_model
        semantic = SemanticCache(
            cc.semantic,
            redis_url=store_url if shared else None,
            key_prefix=cc.key_prefix,
            timeout_seconds=cc.redis_timeout_seconds,
            data_dir=settings.data_dir,
            # embedder provider: the gateway's own embeddings call, recorded in the ledger for the caller.
            embed_call=provider_embed(gateway, embedding_model, ledger) if embedding_model else None,
        )
        gateway.services += (semantic,)
    shared_counts = None
    cache_url = cc.url or rl.counter_url
    if cache_on and cache_url is not None and cache_url.startswith(("redis://", "rediss://", "unix://")):
        # Hit and miss counts of every replica, next to this process's (docs/caching.md, Stats).
        from tollgate.state.cache_stats_redis import RedisCacheTally

        shared_counts = RedisCacheTally(cache_url, key_prefix=cc.key_prefix, timeout_seconds=cc.redis_timeout_seconds)
        gateway.services += (shared_counts,)
    gateway.cache = CachePolicy(cache_store, cc, prices, semantic=semantic, shared_counts=shared_counts)
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
        langfuse = LangfuseExporter(config.langfuse)
        composer.langfuse = langfuse
        composer.langfuse_content = config.langfuse.capture_content
        gateway.services += (langfuse,)
    if config.sso.enabled:
        # The admin UI's single sign-on; a service so its HTTP client to the provider is closed at shutdown.
        gateway.sso = SingleSignOn(config.sso, master_key, storage.audit)
        gateway.services += (gateway.sso,)
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
            semantic_embedding_failures=semantic.embedding_failures if semantic is not None else None,
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
        composer.recorder = recorder
    # The pipelines of every guardrail profile; a reload of the guardrails section composes new ones.
    gateway.compose = composer.pipelines
    gateway.pipelines = composer.pipelines(config.guardrails)
    return gateway


class PipelineComposer:
    """Composes the pipeline of each guardrail profile: the gateway-wide policies (built once, shared) around
    the guards of the profile (built per profile and per config version). The order is fixed here; each
    constraint is stated next to the policy it concerns."""

    def __init__(
        self,
        admit: tuple[AdmitPolicy, ...],
        reservations: ReservationPolicy,
        budgets: BudgetPolicy,
        finalize: tuple[FinalizePolicy, ...],
        shadow: ShadowPolicy,
        guard_audit: GuardrailAuditPolicy | None,
    ) -> None:
        self.admit = admit
        self.reservations = reservations
        self.budgets = budgets
        self.finalize = finalize
        self.shadow = shadow
        self.guard_audit = guard_audit
        self.langfuse: LangfuseExporter | None = None
        self.langfuse_content = False
        self.recorder: MetricsRecorder | None = None

    def pipelines(self, guardrails: GuardrailsConfig) -> Pipelines:
        """A pipeline per profile of ``guardrails``, and its assignments. Raises ``ValueError`` when a guard
        cannot be built from its config."""
        profiles = {
            name: self.compose(guardrails.profile(name), name)
            for name in guardrails.profile_names()
            if name != DEFAULT_PROFILE
        }
        return Pipelines(self.compose(guardrails, DEFAULT_PROFILE), profiles, guardrails.assign)

    def compose(self, guards: GuardrailsConfig, profile: str) -> Pipeline:
        # Token caps are a cheap rejection: before the limits and the budget reserve anything, and they reserve
        # for the clamped max_tokens. INSPECT writes the cap into the body.
        caps = CapsPolicy(guards.caps) if guards.caps.enabled else None
        admit: list[AdmitPolicy] = [*self.admit, *([caps] if caps is not None else []), self.reservations]
        admit.append(self.shadow)  # last: it samples admitted requests
        inspect: list[InspectPolicy] = []
        respond: list[RespondPolicy] = []
        review: list[ReviewPolicy] = []
        streams: list[StreamFilterFactory] = []
        finalize: list[FinalizePolicy] = list(self.finalize)  # the ledger first: it prices the request
        closers: list[Callable[[], Awaitable[None]]] = []
        order: list[tuple[str, str]] = [("caps", "admit")] if caps is not None else []
        if guards.pii.enabled:
            pii = PIIPolicy(guards.pii)
            inspect.append(pii)
            respond.append(pii)
            streams.append(pii)  # restores placeholders first: the output guards screen what the caller sees
            finalize.append(pii)  # drops the request's mapping
            closers.append(pii.close)  # the NER thread it owns, if any
            order.append(("pii", "input+output"))
        if guards.injection.enabled:  # after PII masking: it scores what the provider would see
            injection = InjectionPolicy(guards.injection)
            inspect.append(injection)
            finalize.append(injection)
            order.append(("injection", "input"))
        if guards.code.enabled:
            code = CodeGuardPolicy(guards.code)
            inspect.append(code)
            finalize.append(code)
            order.append(("code", "input"))
        if caps is not None:
            inspect.append(caps)
            finalize.append(caps)
        if guards.output_filter.enabled:
            # After the PII restorer (it screens what the caller would see). Installed only when on: any stream
            # filter rules out relaying the provider's bytes.
            output_filter = OutputFilterPolicy(guards.output_filter)
            respond.append(output_filter)
            streams.append(output_filter)
            order.append(("output_filter", "output"))
        if guards.output_schema.enabled:
            # After the output filter: it validates the answer the caller gets. Its stream filter is built only for
            # requests that ask for a JSON schema, so other streams keep the relay fast path.
            schema = OutputSchemaPolicy(guards.output_schema)
            respond.append(schema)
            streams.append(schema)
            finalize.append(schema)  # forgets the request's retry count
            order.append(("output_schema", "output"))
        if guards.webhook.enabled:
            # Last in INSPECT: the service sees what the provider would (masked, capped); after every other output
            # policy in RESPOND (non-streamed answers only).
            webhook = WebhookGuardPolicy(guards.webhook)
            if guards.webhook.on_request:
                inspect.append(webhook)
            if guards.webhook.on_response:
                review.append(webhook)
            closers.append(webhook.close)
            stages = [
                stage
                for stage, on in (("input", guards.webhook.on_request), ("output", guards.webhook.on_response))
                if on
            ]
            order.append(("webhook", "+".join(stages)))
        if self.guard_audit is not None:
            finalize.append(self.guard_audit)  # after every guard: it records the decisions they left
        # Shadow traffic first among output policies: it keeps the provider's own answer.
        respond.insert(0, self.shadow)
        streams.insert(0, self.shadow)
        finalize.append(self.shadow)  # after the ledger: it reads the primary's priced cost
        if self.langfuse is not None:
            # FINALIZE after the ledger (it prices the call). With content: what the provider saw and wrote, so
            # last in INSPECT (after PII masking), and before PII placeholders are restored in RESPOND.
            finalize.append(self.langfuse)
            if self.langfuse_content:
                inspect.append(self.langfuse)
                respond.insert(1, self.langfuse)
                streams.insert(1, self.langfuse)
        streams.append(self.budgets)  # last: the budget cut counts what the client actually receives
        if self.recorder is not None:
            finalize.append(self.recorder)  # last: metrics see what every other policy recorded
        return Pipeline(
            profile=profile,
            admit=tuple(admit),
            inspect=tuple(inspect),
            respond=tuple(respond),
            review=tuple(review),
            stream_filters=tuple(streams),
            finalize=tuple(finalize),
            closers=tuple(closers),
            guards=tuple(order),
        )
