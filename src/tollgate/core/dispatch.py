"""DISPATCH: try the route's candidates in the strategy's order until one answers; commit at the first chunk.

Retries and fallbacks happen only before anything reached the client: for a stream that is until the
upstream produced its first canonical chunk, so a provider that fails before streaming is replaced
transparently, and one that fails after is reported as a terminal error event by the front door.
The decisions (order, breakers, backoff, retry budget) are the pure code in ``routing/``; this loop
does the waiting and the calling, and records outcomes and latencies for the next decisions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tollgate.context import RequestContext
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport, UpstreamResponse
from tollgate.errors import (
    ProviderBadRequestError,
    ProviderProtocolError,
    ProviderTimeoutError,
    ServiceUnavailableError,
    TollgateError,
    UnsupportedParameterError,
    UpstreamError,
)
from tollgate.observability import tracing
from tollgate.providers.base import Deployment, ProviderAdapter, RelayDecoder, UpstreamRequest, WireFormat
from tollgate.routing.events import skip_reason
from tollgate.routing.queue import SlotQueue, priority_of
from tollgate.routing.resolver import Route
from tollgate.routing.retry import after_failure
from tollgate.routing.rules import no_compliant_error
from tollgate.routing.split import arm_first, assign
from tollgate.routing.strategies import Candidate, RoutingState, order
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage

Piece = TypeVar("Piece")
PieceOut = TypeVar("PieceOut", covariant=True)
S = TypeVar("S", bound="StartedStream[list[JSONObject]] | StartedStream[bytes]")
T = TypeVar("T")
P = TypeVar("P")

log = logging.getLogger("tollgate.routing")

# Output tokens assumed by lowest_cost when the request sets no max_tokens (output usually costs more).
_NOMINAL_OUTPUT_TOKENS = 256


@dataclass(slots=True)
class Completed:
    """A non-streaming answer: canonical JSON, plus the provider's raw bytes when they are already OpenAI."""

    data: JSONObject
    raw_openai: bytes | None
    usage: Usage | None


class _Decoder(Protocol[PieceOut]):
    @property
    def usage(self) -> Usage | None: ...

    def feed(self, data: bytes) -> PieceOut: ...

    def close(self) -> PieceOut: ...


class StartedStream(Generic[Piece]):
    """A stream whose first piece has arrived; iterate for the rest. Always ``aclose()`` it."""

    def __init__(
        self, first: Piece, decoder: _Decoder[Piece], resp: UpstreamResponse, body: AsyncIterator[bytes]
    ) -> None:
        self.first = first
        self.decoder = decoder
        self._resp = resp
        self._body = body
        # Called once when the stream ends: True if it ran to its end (routing's in-flight and latency).
        self.on_finish: Callable[[bool], None] | None = None

    async def __aiter__(self) -> AsyncIterator[Piece]:
        if self.first:
            yield self.first
        async for data in self._body:
            piece = self.decoder.feed(data)
            if piece:
                yield piece
        tail = self.decoder.close()
        self._finish(True)
        if tail:
            yield tail

    def _finish(self, completed: bool) -> None:
        hook, self.on_finish = self.on_finish, None
        if hook is not None:
            hook(completed)

    @property
    def usage(self) -> Usage | None:
        return self.decoder.usage

    async def aclose(self) -> None:
        self._finish(False)
        self._resp.close()
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()


class ChunkStream(StartedStream[list[JSONObject]]):
    """Pieces are canonical chunks, for the client's encoder."""


class RelayStream(StartedStream[bytes]):
    """Pieces are the provider's own bytes, already in the client's format."""


Prepare = Callable[[ProviderAdapter], P]
Call = Callable[[ProviderAdapter, P], Awaitable[T]]


@dataclass(slots=True)
class _Queued:
    """The attempt loop's queue state: candidates skipped because full, and a slot a queue handed over."""

    full: list[Candidate] = dataclasses.field(default_factory=list)
    slot: Candidate | None = None
    waited: bool = False


# Provider refusals (error codes) a logical model may route around (models.<name>.fallback_on).
_FALLBACK_REASONS = {"context_length_exceeded": "context_window", "content_policy_violation": "content_policy"}


class Dispatcher:
    def __init__(self, snapshot: Snapshot, transport: Transport, state: RoutingState) -> None:
        self.snapshot = snapshot
        self.transport = transport
        # Breakers, latency averages and in-flight counts belong to the process, not to one config
        # version: the gateway passes the same state to every dispatcher, with the current settings.
        state.settings = snapshot.routing
        self.state = state

    async def chat(
        self, ctx: RequestContext, req: ChatRequest, route: Route, *, relay: WireFormat | None = None
    ) -> Completed | ChunkStream | RelayStream:
        """Answer from the first deployment that can. With ``relay`` set to the client's format, a stream
        from a provider of that same format is forwarded as its own bytes (no stream filter may be active)."""
        if ctx.shadow is not None:  # sampled for shadow traffic: the request as sent, after the guardrails
            ctx.shadow.body = req.body

        async def call(adapter: ProviderAdapter, upstream: UpstreamRequest) -> Completed | ChunkStream | RelayStream:
            if req.stream:
                if relay is not None and adapter.wire_format == relay and hasattr(adapter, "relay_stream_decoder"):
                    return await self._start_relay(adapter, upstream, req)
                return await self._start_stream(adapter, upstream, req)
            return await self._complete(adapter, upstream, req)

        return await self._attempts(ctx, route, lambda adapter: adapter.chat_request(req), call)

    async def _attempts(self, ctx: RequestContext, route: Route, prepare: Prepare[P], call: Call[P, T]) -> T:
        """The attempt loop: candidates in the strategy's order; skip open breakers and full deployments;
        retry the same deployment (backoff, short Retry-After) within ``max_retries``, else fall back;
        every call after the first needs room in the retry budget."""
        state = self.state
        settings = state.settings
        clock = state.clock
        state.budget.record_request(clock(), settings.budget)
        ctx.routed = True
        ordered = order(
            route.strategy,
            route.plan,
            state,
            prompt_tokens=ctx.estimated_prompt_tokens,
            output_tokens=ctx.max_output_tokens or _NOMINAL_OUTPUT_TOKENS,
            stream=ctx.stream,
        )
        if route.split is not None:
            arm = assign(route.split, route.plan, ctx, state.rng)
            if arm is not None:
                ordered = arm_first(ordered, arm)
                ctx.route_arm = arm.key
                ctx.extra_headers.append((b"x-tollgate-arm", arm.key.encode()))
        ctx.extra_headers.append((b"x-tollgate-route-strategy", route.strategy.encode()))
        last_error: TollgateError | None = None
        skipped: list[str] = []
        calls = retries = 0
        routed_around = False  # the last call ended in a refusal the model routes around (fallback_on)
        queued = _Queued()
        try:
            while True:
                for position, cand in enumerate(ordered, 1):
                    if queued.slot is not None and cand is not queued.slot:
                        continue  # the second pass: only the deployment whose queue gave a slot
                    adapter = self.snapshot.adapter(cand.deployment)
                    try:
                        prepared = prepare(adapter)
                    except UnsupportedParameterError as exc:
                        # Another candidate may support the parameter; the last word is the last candidate's.
                        last_error = exc
                        continue
                    while True:
                        now = clock()
                        if queued.slot is cand:
                            queued.slot = None
                            reason = state.take_queued(cand, now)
                        else:
                            reason = state.acquire(cand, now)
                        if reason is not None:
                            skipped.append(f"{cand.key}: {reason}")
                            why = skip_reason(reason)
                            state.events.skip(cand.key, why)
                            if why == "max_concurrency":
                                queued.full.append(cand)
                            break
                        # A refusal the model routes around is a routing decision, not a retry: the call
                        # after it needs no room in the retry budget (which exists against outages).
                        if calls and not routed_around and not state.budget.try_spend(now, settings.budget):
                            self._unused(cand)
                            log.warning("retry budget exhausted: not calling %s for %s", cand.key, route.requested)
                            assert last_error is not None
                            raise self._exhausted(route, last_error)
                        calls += 1
                        routed_around = False
                        ctx.deployment, ctx.attempts, ctx.fallback = (
                            cand.deployment,
                            ctx.attempts + 1,
                            cand is not ordered[0],
                        )
                        traced = tracing.attempt(ctx, cand.deployment)  # None unless the request is traced
                        try:
                            if traced is None:
                                result = await call(adapter, prepared)
                            else:
                                sending = tracing.sending(traced)
                                try:
                                    result = await call(adapter, prepared)
                                finally:
                                    tracing.done_sending(sending)
                        except UpstreamError as exc:
                            if traced is not None:
                                traced.failed(exc.code or exc.type)
                            last_error = exc
                            self._failed(cand, exc, clock())
                            if not exc.retryable:
                                if _FALLBACK_REASONS.get(exc.code or "") not in route.fallback_on:
                                    raise
                                # A refusal the model asked to route around (a larger context window, another
                                # provider's content policy): the next candidate, without retrying this one.
                                routed_around = True
                                if position < len(ordered):
                                    state.events.fallback(cand.key)
                                break
                            choice = after_failure(retries, exc.retry_after, settings.retries, state.rng)
                            if choice.step == "retry" and state.budget.can_spend(clock(), settings.budget):
                                retries += 1
                                state.events.retry(cand.key)
                                await asyncio.sleep(choice.delay)
                                continue
                            if position < len(ordered):
                                state.events.fallback(cand.key)  # moves on to the next candidate
                            break
                        except BaseException:
                            if traced is not None:
                                traced.abandoned()
                            self._unused(cand)  # cancelled (the client left) or a bug: no outcome to record
                            raise
                        if traced is not None:
                            traced.succeeded(getattr(result, "usage", None), isinstance(result, StartedStream))
                        self._succeeded(cand, result, clock() - now)
                        return result
                if calls == 0 and queued.full and not queued.waited and settings.queue.enabled:
                    # Every candidate was skipped and some only because they were full: wait for a slot.
                    queued.waited = True
                    queued.slot = await self._wait_for_slot(ctx, route, queued.full[0])
                    continue
                break
            if last_error is None or (calls == 0 and skipped):
                raise self._unavailable(route, skipped)
            raise self._exhausted(route, last_error)
        finally:
            if ctx.deployment is not None:
                ctx.extra_headers.append((b"x-tollgate-deployment", ctx.deployment.label.encode()))

    async def _wait_for_slot(self, ctx: RequestContext, route: Route, cand: Candidate) -> Candidate:
        """Wait in ``cand``'s queue until a slot is handed over (routing/queue.py); 503 with Retry-After when
        the queue is full or the wait runs out."""
        state = self.state
        settings = state.settings.queue
        queue = state.queues.get(cand.key)
        if queue is None:
            queue = state.queues[cand.key] = SlotQueue()
        if len(queue) >= settings.max_size:
            state.events.skip(cand.key, "queue_full")
            raise ServiceUnavailableError(
                f"Every deployment of model '{route.requested}' is at its concurrency limit and the queue of "
                f"{cand.key} is full ({settings.max_size} waiting). Retry shortly.",
                code="deployment_queue_full",
                headers={"retry-after": "1"},
            )
        started = state.clock()
        slot = queue.push(priority_of(ctx))
        try:
            await asyncio.wait_for(slot, settings.max_wait_seconds)
        except TimeoutError:
            state.events.skip(cand.key, "queue_timeout")
            raise ServiceUnavailableError(
                f"Every deployment of model '{route.requested}' stayed at its concurrency limit: waited "
                f"{settings.max_wait_seconds:g}s in the queue of {cand.key}. Retry shortly.",
                code="deployment_queue_timeout",
                headers={"retry-after": "1"},
            ) from None
        except BaseException:
            if slot.done() and not slot.cancelled():
                state.release(cand)  # handed over just as the client left: pass it on
            raise
        waited_ms = (state.clock() - started) * 1000.0
        ctx.extra_headers.append((b"x-tollgate-queue-wait-ms", f"{waited_ms:.1f}".encode()))
        return cand

    @staticmethod
    def _exhausted(route: Route, last_error: TollgateError) -> TollgateError:
        """The answer when no call is left: the last error, or for a residency-pinned request a 503 that
        says no compliant deployment could answer (never a fallback outside the zone, so not an outage)."""
        if not route.residency:
            return last_error
        detail = f"The last deployment tried failed: {last_error.message}"
        err = no_compliant_error(route, detail, last_error.headers or None)
        err.__cause__ = last_error
        return err

    def _unused(self, cand: Candidate) -> None:
        self.state.release(cand)
        self.state.breaker(cand.key).release()

    def _failed(self, cand: Candidate, exc: UpstreamError, now: float) -> None:
        state = self.state
        state.release(cand)
        breaker = state.breaker(cand.key)
        if exc.retryable:
            state.events.call(cand.key, "retryable_error")
            changed = breaker.failure(now, state.settings.breaker)
            if changed is not None:
                state.transitioned(cand.key, changed, now)
                log.warning("circuit breaker of %s is now %s (%s)", cand.key, changed, breaker.reason)
        elif isinstance(exc, ProviderBadRequestError):
            state.events.call(cand.key, "error")
            if breaker.success(now, state.settings.breaker) is not None:  # it answered: the deployment is up
                state.transitioned(cand.key, "closed", now)
        else:
            state.events.call(cand.key, "error")
            breaker.release()

    def _succeeded(self, cand: Candidate, result: object, elapsed: float) -> None:
        state = self.state
        now = state.clock()
        state.events.call(cand.key, "success")
        if state.breaker(cand.key).success(now, state.settings.breaker) is not None:
            state.transitioned(cand.key, "closed", now)
            log.warning("circuit breaker of %s is now closed (a probe succeeded)", cand.key)
        stats = state.stats(cand.key)
        alpha = state.settings.latency_alpha
        if isinstance(result, StartedStream):
            stats.record(elapsed, None, alpha)
            started = now - elapsed

            def finish(completed: bool) -> None:
                state.release(cand)
                if completed:
                    stats.record(None, state.clock() - started, alpha)

            result.on_finish = finish
        else:
            # Non-streaming (or a passthrough whose body the front door reads): headers and body arrive together.
            state.release(cand)
            stats.record(None, elapsed, alpha)

    def _unavailable(self, route: Route, skipped: list[str]) -> ServiceUnavailableError:
        state, now = self.state, self.state.clock()
        waits = [
            state.settings.breaker.open_seconds - (now - b.opened_at)
            for c in route.plan
            if (b := state.breakers.get(c.key)) is not None and b.state == "open"
        ]
        headers = {"retry-after": str(max(1, math.ceil(min(waits))))} if waits else None
        if route.residency:
            return no_compliant_error(route, f"Unavailable: {'; '.join(skipped)}.", headers)
        err = ServiceUnavailableError(
            f"No deployment of model '{route.requested}' is available right now: {'; '.join(skipped)}.",
            code="no_healthy_deployment",
            headers=headers,
        )
        return err

    async def _send(self, adapter: ProviderAdapter, upstream: UpstreamRequest, stream: bool) -> UpstreamResponse:
        traceparent = tracing.upstream_traceparent()
        if traceparent is not None:  # W3C trace context upstream (the adapter's headers are shared: copy)
            upstream = dataclasses.replace(upstream, headers={**upstream.headers, "traceparent": traceparent})
        resp = await self.transport.send(upstream, adapter.deployment, stream=stream)
        if resp.status >= 400:
            body = await resp.read()
            raise adapter.classify_error(resp.status, resp.headers, body)
        return resp

    async def _complete(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> Completed:
        resp = await self._send(adapter, upstream, stream=False)
        body = await resp.read()
        data, usage = adapter.parse_chat_response(body, req)
        return Completed(data, body if adapter.wire_format == "openai" else None, usage)

    async def _start_stream(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> ChunkStream:
        return await self._start(adapter, upstream, adapter.chat_stream_decoder(req), ChunkStream)

    async def _start_relay(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> RelayStream:
        decoder: RelayDecoder = adapter.relay_stream_decoder(req)  # type: ignore[attr-defined]
        return await self._start(adapter, upstream, decoder, RelayStream)

    async def _start(
        self, adapter: ProviderAdapter, upstream: UpstreamRequest, decoder: _Decoder[Piece], kind: type[S]
    ) -> S:
        """Send, then wait for the first piece: until then a failure can still go to the next deployment.
        With a ``first_token`` timeout, the whole wait has that deadline, however many bytes trickle in."""
        deadline = adapter.deployment.timeouts.first_token
        if deadline is None:
            return await self._first_piece(adapter, upstream, decoder, kind)
        try:
            async with asyncio.timeout(deadline):
                return await self._first_piece(adapter, upstream, decoder, kind)
        except TimeoutError:
            provider = adapter.deployment.provider
            raise ProviderTimeoutError(
                f"Provider '{provider}' sent no first token within {deadline:g}s.", provider=provider
            ) from None

    async def _first_piece(
        self, adapter: ProviderAdapter, upstream: UpstreamRequest, decoder: _Decoder[Piece], kind: type[S]
    ) -> S:
        resp = await self._send(adapter, upstream, stream=True)
        body = resp.chunks()
        try:
            async for data in body:
                first = decoder.feed(data)
                if first:
                    return kind(first, decoder, resp, body)  # type: ignore[arg-type]
            first = decoder.close()  # an upstream that answered 200 and then nothing is a failure: retry it
            if not first:
                raise ProviderProtocolError(
                    f"Provider '{adapter.deployment.provider}' sent an empty stream.",
                    provider=adapter.deployment.provider,
                )
            return kind(first, decoder, resp, body)  # type: ignore[arg-type]
        except BaseException:
            resp.close()
            raise

    async def shadow(self, deployment: Deployment, req: ChatRequest) -> Completed:
        """One non-streaming call to a shadow candidate (policies/shadow.py): no retry, no fallback, and
        nothing recorded in the routing state (breakers, latency averages, in-flight, retry budget)."""
        adapter = self.snapshot.adapter(deployment)
        return await self._complete(adapter, adapter.chat_request(req), req)

    async def embeddings(self, ctx: RequestContext, body: JSONObject, route: Route) -> tuple[JSONObject, Usage | None]:
        async def call(adapter: ProviderAdapter, upstream: UpstreamRequest) -> tuple[JSONObject, Usage | None]:
            resp = await self._send(adapter, upstream, stream=False)
            return adapter.parse_embeddings_response(await resp.read(), body)

        return await self._attempts(ctx, route, lambda adapter: adapter.embeddings_request(body), call)

    async def passthrough(
        self,
        ctx: RequestContext,
        path: str,
        body: JSONObject,
        raw: bytes | None,
        route: Route,
        *,
        stream: bool,
    ) -> UpstreamResponse:
        """Forward a body in the provider's own format (legacy completions, same-format requests)."""

        def prepare(adapter: ProviderAdapter) -> UpstreamRequest:
            build = getattr(adapter, "passthrough_request", None)
            if build is None:
                raise UnsupportedParameterError(
                    f"Provider '{adapter.deployment.provider}' does not support the /{path} endpoint.", param="model"
                )
            upstream: UpstreamRequest = build(path, body, raw)
            return upstream

        async def call(adapter: ProviderAdapter, upstream: UpstreamRequest) -> UpstreamResponse:
            return await self._send(adapter, upstream, stream=stream)

        return await self._attempts(ctx, route, prepare, call)
