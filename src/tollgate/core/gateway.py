"""The gateway: the live config snapshot, the pipeline's phases, and what the front doors call."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import orjson

from tollgate.config.guardrails import DEFAULT_PROFILE, GuardrailsConfig
from tollgate.context import Principal, RequestContext
from tollgate.core.auth import Authenticator, key_from_headers
from tollgate.core.dispatch import ChunkStream, Completed, Dispatcher
from tollgate.core.phases import (
    ReviewedStream,
    StreamFilter,
)
from tollgate.core.pipeline import Pipeline, Pipelines
from tollgate.core.snapshot import Snapshot
from tollgate.core.sso import SESSION_PREFIX, SingleSignOn
from tollgate.core.transport import Transport
from tollgate.errors import PermissionDeniedError, TollgateError, UpstreamError
from tollgate.observability import tracing
from tollgate.observability.body_log import StreamBodyLog
from tollgate.policies.cache import CachedAnswer, CachePlan, CachePolicy, ClientFormat, PieceSource, RecordingStream
from tollgate.policies.model_access import ModelAccessPolicy, model_allowed
from tollgate.policies.shadow import ShadowPolicy
from tollgate.routing.budget_levels import BudgetLevels
from tollgate.routing.resolver import Route
from tollgate.routing.rules import RequestFacts, no_compliant_error
from tollgate.routing.strategies import RoutingState
from tollgate.state.factory import Storage
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import ChatRequest, Usage, chat_request_from_body, max_output_tokens

if TYPE_CHECKING:
    from tollgate.core.reload import Reloader
    from tollgate.observability.tracing import Tracing

access_log = logging.getLogger("tollgate.access")
routing_log = logging.getLogger("tollgate.routing")
_NO_HEADERS: Mapping[bytes, bytes] = {}

# /chat's default model when neither the request nor the config names one: the first provider found here.
_DEFAULT_BY_PROVIDER = (
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash"),
)


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Flush what is queued; must not lose data."""
        ...


class Gateway:
    def __init__(
        self,
        snapshot: Snapshot,
        transport: Transport,
        storage: Storage,
        master_key: str,
        max_body_bytes: int,
    ) -> None:
        self.transport = transport
        self.storage = storage
        self.keys = storage.keys
        self.authenticator = Authenticator(storage.keys, master_key, storage.tenants)
        self.max_body_bytes = max_body_bytes
        # The policies of each guardrail profile, in phase order; a request gets its caller's at AUTHENTICATE.
        self.pipelines = Pipelines(Pipeline(admit=(ModelAccessPolicy(),)))
        # Builds the pipelines of a guardrails config (core/assembly.py), for a reload to install new ones.
        self.compose: Callable[[GuardrailsConfig], Pipelines] | None = None
        self._retired: list[tuple[float, Callable[[], Awaitable[None]]]] = []  # closers of replaced pipelines
        self.cache: CachePolicy | None = None  # the exact response cache (CACHE_LOOKUP), off when None
        self.shadow: ShadowPolicy | None = None  # shadow traffic (policies/shadow.py), for GET /admin/shadow
        self.snapshot = snapshot
        self.routing_state = RoutingState(snapshot.routing)
        # Budget levels the budget policy saw, for routing rules' budget_remaining (outlives config reloads).
        self.budget_levels = BudgetLevels()
        self.dispatcher = Dispatcher(snapshot, transport, self.routing_state)
        self.draining = False
        self.reloader: Reloader | None = None  # set when serving from a config file (POST /admin/reload)
        self.tracing: Tracing | None = None  # OpenTelemetry traces, when on (observability/tracing.py)
        self.sso: SingleSignOn | None = None  # the admin UI's single sign-on, when sso.enabled (core/sso.py)
        self.log_bodies = False  # server.log_bodies: bodies in the access log (after masking)
        self.log_body_max_bytes = 4096
        # Background parts with a lifecycle (writers, settlement queues), started and stopped with the app,
        # and resources closed after them (counter stores).
        self.services: tuple[Service, ...] = ()
        self.closers: tuple[Callable[[], Awaitable[None]], ...] = ()

    # The default profile's policies, per phase (a caller with no profile assigned runs these).
    @property
    def pipeline(self) -> Pipeline:
        return self.pipelines.default

    def pipeline_of(self, ctx: RequestContext) -> Pipeline:
        """The pipeline a request runs (its caller's, chosen at AUTHENTICATE), else the default one."""
        pipeline = ctx.pipeline
        return pipeline if isinstance(pipeline, Pipeline) else self.pipelines.default

    def install(self, pipelines: Pipelines, grace_seconds: float = 0.0) -> None:
        """Serve new requests with ``pipelines``; what the old ones hold open is closed after ``grace_seconds``
        (requests already running keep the pipeline they started with)."""
        old = self.pipelines
        self.pipelines = pipelines
        kept = {id(p) for p in pipelines.by_profile.values()}
        due = time.monotonic() + grace_seconds
        for pipeline in old.by_profile.values():
            if id(pipeline) not in kept:
                self._retired.extend((due, close) for close in pipeline.closers)

    async def close_retired(self, now: float | None = None) -> None:
        """Close what replaced pipelines held open, once their grace time is over (all of it when ``now`` is
        ``inf``)."""
        moment = time.monotonic() if now is None else now
        due = [close for at, close in self._retired if at <= moment]
        self._retired = [(at, close) for at, close in self._retired if at > moment]
        for close in due:
            try:
                await close()
            except Exception:
                logging.getLogger("tollgate").exception("closing a replaced pipeline's resource failed")

    async def start(self) -> None:
        await self.transport.start()
        for service in self.services:
            await service.start()

    async def stop(self) -> None:
        """Readiness goes false first; then queued work is flushed before storage closes."""
        self.draining = True
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                logging.getLogger("tollgate").exception("stopping %s failed", type(service).__name__)
        for close in (*self.closers, *self.pipelines.closers()):
            await close()
        await self.close_retired(float("inf"))
        await self.transport.stop()
        await self.storage.close()

    def swap(self, snapshot: Snapshot) -> None:
        """Install a new config snapshot; in-flight requests keep the one they started with."""
        self.snapshot = snapshot
        self.dispatcher = Dispatcher(snapshot, self.transport, self.routing_state)

    # Phase 1: AUTHENTICATE
    async def authenticate(self, ctx: RequestContext, headers: Mapping[bytes, bytes]) -> Principal:
        key = key_from_headers(headers)
        if self.sso is not None and key is not None and key.startswith(SESSION_PREFIX):
            # A console session from single sign-on: the admin API's endpoints only (front door "admin").
            principal = await self.sso.authenticate(key, admin_api=ctx.front_door == "admin")
        else:
            principal = await self.authenticator.authenticate(key)
        ctx.principal = principal
        ctx.headers = headers
        pipeline = ctx.pipeline = self.pipelines.select(principal)
        if pipeline.profile != DEFAULT_PROFILE:
            ctx.guard_profile = pipeline.profile
        return principal

    # Resolution + phase 2: ADMIT
    async def route(self, ctx: RequestContext, model: str) -> Route:
        ctx.requested_model = model
        if self.log_bodies and ctx.logged_request is None:
            ctx.logged_request = ctx.body  # no INSPECT policy rewrites it, or INSPECT runs (and logs) later
        route = self.resolve(ctx, model)
        if not route.plan:
            # Rules or data residency left no deployment at all: fail before anything is reserved.
            raise no_compliant_error(route)
        admit = self.pipeline_of(ctx).admit
        if tracing.active():
            for policy in admit:
                with tracing.span("admit " + type(policy).__name__):
                    await policy.admit(ctx, route)
            return route
        for policy in admit:
            await policy.admit(ctx, route)
        return route

    def rerouted(self, ctx: RequestContext, route: Route) -> Route:
        """After INSPECT: the route to the model a guard sent the request to instead (the injection guard's
        reroute action), else ``route``. The administrator chose that model, so the caller's allow-list does not
        apply to it; the budget reserved at ADMIT stays, and the request is settled at what it really cost."""
        model = ctx.reroute_model
        if model is None or model == route.requested:
            return route
        try:
            new = self.resolve(ctx, model)
        except TollgateError:
            new = None
        if new is None or not new.plan:
            # Fail closed: the request was judged unsafe for the model it asked for.
            raise PermissionDeniedError(
                f"The request was held back by a guardrail and its safer model '{model}' is not available. Ask "
                "your administrator to check guardrails.injection.reroute_model.",
                code="guardrail_reroute_unavailable",
            )
        routing_log.info("request %s: rerouted by a guardrail from %s to %s", ctx.request_id, route.requested, model)
        ctx.requested_model = model
        return new

    def resolve(self, ctx: RequestContext, model: str) -> Route:
        """The route of a request: the model's deployments, shaped by routing rules and data residency."""
        snap = self.snapshot
        base = snap.resolve(model)
        route = snap.rules.apply(base, request_facts(ctx, self.budget_levels))
        if route is not base and routing_log.isEnabledFor(logging.DEBUG):
            routing_log.debug(
                "request %s: rules %s, residency %s: %d of %d deployments kept",
                ctx.request_id,
                list(route.rules),
                list(route.residency),
                len(route.plan),
                len(route.plan) + len(route.excluded),
            )
        return route

    def default_model(self) -> str:
        snap = self.snapshot
        if snap.config.settings.default_model:
            return snap.config.settings.default_model
        if snap.config.models:
            return next(iter(snap.config.models))
        for provider, model in _DEFAULT_BY_PROVIDER:
            if provider in snap.providers:
                return model
        return "demo/tollgate-demo"

    def visible_models(self, principal: Principal) -> list[JSONObject]:
        models = self.snapshot.models()
        if not principal.allowed_models:
            return models
        return [m for m in models if model_allowed(principal.allowed_models, str(m["id"]))]

    # Phase 4: CACHE_LOOKUP
    async def cache_lookup(
        self,
        ctx: RequestContext,
        fmt: ClientFormat,
        body: Mapping[str, JSONValue],
        route: Route,
        headers: Mapping[bytes, bytes],
    ) -> tuple[CachePlan | None, CachedAnswer | None]:
        """After ADMIT (and INSPECT): the request's cache plan, and the cached answer on a hit (then DISPATCH
        is skipped, ``ctx.cache_hit`` is set). Adds ``x-tollgate-cache: hit|miss|skip`` to the response."""
        cache = self.cache
        if cache is None:
            return None, None
        plan = cache.plan(ctx, fmt, body, route, headers)
        if plan is None:
            return None, None
        if tracing.active():
            with tracing.span("cache lookup") as span:
                answer = await cache.lookup(ctx, plan, route)
                if span is not None:
                    span.set_attribute("tollgate.cache.result", plan.status)
        else:
            answer = await cache.lookup(ctx, plan, route)
        ctx.extra_headers.append(plan.header)
        return plan, answer

    @staticmethod
    def cache_stores(plan: CachePlan | None) -> bool:
        """Whether this request's answer is to be stored (then a stream must go through canonical chunks)."""
        return plan is not None and plan.store

    async def cache_store(
        self, plan: CachePlan | None, completion: JSONObject, usage: Usage | None, ctx: RequestContext | None = None
    ) -> None:
        """Store a successful non-streaming answer, after it was sent; never one an output guard masked, modified
        or blocked (the stored answer is the provider's, and a cache hit skips RESPOND)."""
        if ctx is not None and any(
            d.phase == "output" and d.action in ("mask", "block", "modify") for d in ctx.guardrail_decisions
        ):
            return
        if self.cache is not None and plan is not None and plan.store:
            await self.cache.save(plan, completion, usage)

    def cache_recording(self, plan: CachePlan | None, stream: PieceSource, filters: Sequence[object]) -> PieceSource:
        """Wrap a canonical stream so that, once complete and not cut or changed by a filter (or a reviewed
        stream's policy, also in ``filters``), its answer is stored."""
        cache = self.cache
        if cache is None or plan is None or not plan.store:
            return stream
        stored = plan

        def cut() -> bool:  # a filter ended the stream, or changed what the model said (no_store)
            return any(getattr(f, "done", False) or getattr(f, "no_store", False) for f in filters)

        def on_complete(completion: JSONObject, usage: Usage | None) -> None:
            cache.save_later(stored, completion, usage)

        return RecordingStream(stream, cut, on_complete)

    # Phase 6: RESPOND
    # Phase 3: INSPECT
    async def inspect(self, ctx: RequestContext, body: JSONObject) -> JSONObject:
        traced = tracing.active()
        for policy in self.pipeline_of(ctx).inspect:
            if traced:
                with tracing.span("inspect " + type(policy).__name__):
                    body = await policy.inspect(ctx, body)
            else:
                body = await policy.inspect(ctx, body)
        if self.log_bodies:
            ctx.logged_request = body  # what the provider sees: masked when the PII guard is on
        return body

    async def inspect_chat(self, ctx: RequestContext, req: ChatRequest) -> ChatRequest:
        """The request to dispatch after INSPECT; a rewritten one has no raw bytes, so none are forwarded."""
        if not self.pipeline_of(ctx).inspect:
            return req
        body = await self.inspect(ctx, req.body)
        return req if body is req.body else chat_request_from_body(body)

    # Phase 6: RESPOND (non-streamed answers; streams go through stream filters)
    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """A rewritten copy of a non-streamed completion when an output policy changed it, else ``None``."""
        out: JSONObject | None = None
        for policy in self.pipeline_of(ctx).respond:
            changed = policy.respond(ctx, completion if out is None else out)
            if changed is not None:
                out = changed
        return out

    async def review(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """``respond``, then the async output policies: the rewritten completion, or ``None`` when unchanged."""
        if self.log_bodies:
            ctx.logged_response = completion  # as the provider answered: placeholders not yet restored
        out = self.respond(ctx, completion)
        for policy in self.pipeline_of(ctx).review:
            changed = await policy.review(ctx, completion if out is None else out)
            if changed is not None:
                out = changed
        return out

    async def answer(
        self, ctx: RequestContext, req: ChatRequest, route: Route, result: Completed
    ) -> tuple[JSONObject | None, Completed]:
        """RESPOND for a non-streamed chat answer, asking the provider again while an output policy refuses the
        answer as retryable (an ``UpstreamError`` with ``retryable``, e.g. a JSON-schema violation). Every call's
        usage is added to ``ctx.usage``. Returns the rewritten completion (or ``None``) and the answer used."""
        while True:
            try:
                return await self.review(ctx, result.data), result
            except UpstreamError as err:
                if not err.retryable:
                    raise
            again = await self.dispatcher.chat(ctx, req, route)
            assert isinstance(again, Completed)  # the request is not streamed
            ctx.usage = _added(ctx.usage, again.usage)
            result = again

    def output_policies(self, ctx: RequestContext) -> bool:
        """Whether this request's non-streamed answer is screened (then it is read, never forwarded as the
        provider's bytes)."""
        return self.pipeline_of(ctx).screens_output or self.log_bodies

    def reviewed(self, ctx: RequestContext, stream: PieceSource) -> ReviewedStream | None:
        """A stream (after its stream filters) wrapped by the async output policies (the webhook's response
        stage), or ``None`` when none reviews streams. The front door awaits its ``ready()`` before the response
        starts. One such policy is configured at most (``guardrails.webhook``)."""
        if not ctx.stream:
            return None
        out: ReviewedStream | None = None
        for policy in self.pipeline_of(ctx).review:
            wrapped = policy.review_stream(ctx, stream if out is None else out)
            if wrapped is not None:
                out = wrapped
        return out

    def reviews_streams(self, ctx: RequestContext) -> bool:
        """Whether this request's stream goes through an async output policy (then it is read as canonical
        chunks)."""
        return bool(self.pipeline_of(ctx).review)

    def stream_filters_for(self, ctx: RequestContext) -> list[StreamFilter]:
        """The stream filters of this request (fresh ones), after ADMIT. Empty: the stream may be relayed
        as the provider's own bytes; otherwise it must go through canonical chunks and ``FilteredStream``."""
        if not ctx.stream:
            return []
        factories = self.pipeline_of(ctx).stream_filters
        filters = [f for factory in factories if (f := factory.stream_filter(ctx)) is not None]
        if self.log_bodies:  # first: it logs what the provider wrote, before any filter changes it
            filters.insert(0, StreamBodyLog(ctx, self.log_body_max_bytes))
        return filters

    # Phase 7: FINALIZE — must not raise.
    def finalize(self, ctx: RequestContext) -> None:
        for policy in self.pipeline_of(ctx).finalize:
            try:
                policy.on_finalize(ctx)
            except Exception:  # a broken policy must never break the request or the other policies
                logging.getLogger("tollgate").exception("finalize policy %s failed", type(policy).__name__)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(_access_line(ctx, self.log_body_max_bytes if self.log_bodies else 0))


class FilteredStream:
    """A canonical stream passed through a request's stream filters, in phase order.

    A filter that sets ``done`` ends the stream: what it returned is the last piece, every filter is
    flushed, and the upstream is closed at once. A filter with ``final_usage(upstream) -> Usage | None``
    decides the usage reported for the request (a cut stream is charged for what it generated).
    """

    def __init__(self, inner: ChunkStream, filters: list[StreamFilter]) -> None:
        self._inner = inner
        self._filters = filters

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        filters = self._filters
        async for chunks in self._inner:
            for flt in filters:
                chunks = flt.feed(chunks) if chunks else chunks
            if any(getattr(flt, "done", False) for flt in filters):
                await self._inner.aclose()
                chunks += self._flush()
                if chunks:
                    yield chunks
                return
            if chunks:
                yield chunks
        tail = self._flush()
        if tail:
            yield tail

    def _flush(self) -> list[JSONObject]:
        carried: list[JSONObject] = []
        for flt in self._filters:
            carried = (flt.feed(carried) if carried else []) + flt.flush()
        return carried

    @property
    def usage(self) -> Usage | None:
        usage = self._inner.usage
        for flt in self._filters:
            final = getattr(flt, "final_usage", None)
            if final is not None:
                usage = final(usage)
        return usage

    async def aclose(self) -> None:
        await self._inner.aclose()


def _added(one: Usage | None, two: Usage | None) -> Usage | None:
    if one is None or two is None:
        return two or one
    return Usage(
        one.prompt_tokens + two.prompt_tokens,
        one.completion_tokens + two.completion_tokens,
        one.cached_tokens + two.cached_tokens,
        one.estimated or two.estimated,
    )


def describe_request(ctx: RequestContext, body: JSONObject, raw: bytes) -> None:
    """What ADMIT needs to know before the call: a cheap upper-bound token estimate (about four bytes
    of JSON per token), the requested output cap, and the client's metadata (tags)."""
    ctx.estimated_prompt_tokens = len(raw) // 4 + 1
    ctx.max_output_tokens = max_output_tokens(body)
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        ctx.metadata = metadata
    ctx.body = body


def request_facts(ctx: RequestContext, levels: BudgetLevels | None = None) -> RequestFacts:
    """What routing rules may read about a request (``levels``: the budget levels this process saw)."""
    headers = ctx.headers if ctx.headers is not None else _NO_HEADERS
    return RequestFacts(headers, ctx.principal, ctx.metadata, ctx.estimated_prompt_tokens, ctx.stream, ctx.body, levels)


def _clipped(value: JSONValue, limit: int) -> str:
    """A body as JSON text, cut to ``limit`` bytes (then marked)."""
    text = orjson.dumps(value)
    if len(text) <= limit:
        return text.decode()
    return text[:limit].decode("utf-8", "ignore") + "...(truncated)"


def _access_line(ctx: RequestContext, body_limit: int = 0) -> str:
    dep = ctx.deployment
    usage = ctx.usage
    principal = ctx.principal
    record: JSONObject = {
        "ts": round(time.time(), 3),
        "request_id": ctx.request_id,
        "front_door": ctx.front_door,
        "endpoint": ctx.endpoint,
        "key_id": principal.key_id if principal else None,
        "team_id": principal.team_id if principal else None,
        "org_id": principal.org_id if principal else None,
        "model": ctx.requested_model,
        "provider": dep.provider if dep else None,
        "upstream_model": dep.model if dep else None,
        "attempts": ctx.attempts,
        "status": ctx.status,
        "error": ctx.error_type,
        "stream": ctx.stream,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cost_usd": ctx.cost_usd,
        "latency_ms": round(ctx.elapsed_ms, 2),
        "config_version": ctx.config_version,
    }
    if ctx.client_disconnected:
        record["client_disconnected"] = True
    if body_limit:
        if ctx.logged_request is not None:
            record["request_body"] = _clipped(ctx.logged_request, body_limit)
        if ctx.logged_response is not None:
            record["response_body"] = _clipped(ctx.logged_response, body_limit)
    return orjson.dumps(record).decode()
