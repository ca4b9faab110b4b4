"""Shadow traffic: mirror a sampled share of a model's chat requests to a candidate deployment, off the path.

The policy takes part in four phases, and does work only for the requests it sampled:

- ADMIT (last of the admit policies, so only admitted requests count): draw the sample. DISPATCH then
  keeps the request body as it sends it, after the guardrails (so the candidate sees exactly what the
  primary saw, masked PII included). No inspect policy: adding one would end the Anthropic front door's
  native pass-through for every request.
- RESPOND and a stream filter (first of each): keep the primary's answer text as the provider gave it.
- FINALIZE (after the ledger priced the primary): start the shadow call as a background task and return.

The shadow call starts only after the client's answer is complete, so it never shares the request's
time; it is one non-streaming call with no retry and no fallback, it does not touch the routing state
(breakers, latency averages), and at most ``max_concurrency`` run at once per model: a sampled request
beyond that is dropped and counted, never queued. Its cost goes to a ledger row of its own (endpoint
``shadow``, no key, user, team or org), which no spend report, total, budget or rate limit includes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping

from tollgate.context import RequestContext, ShadowCapture
from tollgate.errors import TollgateError
from tollgate.policies.ledger import LedgerPolicy
from tollgate.providers.base import Deployment
from tollgate.routing.events import RoutingEvents
from tollgate.routing.resolver import Route
from tollgate.routing.shadow import Outcome, ShadowStats, ShadowTarget
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage, chat_request_from_body

log = logging.getLogger("tollgate.shadow")

# The call to the candidate: the completion (canonical JSON) and its usage; raises TollgateError on failure.
ShadowCall = Callable[[Deployment, ChatRequest], Awaitable[tuple[JSONObject, Usage | None]]]


def _text(completion: JSONObject) -> str | None:
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else ""


class _Collect:
    """A stream filter that passes every chunk on untouched and keeps the first choice's text."""

    def __init__(self, capture: ShadowCapture) -> None:
        self._capture = capture

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        text = self._capture.text
        for chunk in chunks:
            for choice in chunk.get("choices") or ():  # type: ignore[union-attr]
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    delta = choice.get("delta")
                    if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                        text.append(delta["content"])  # type: ignore[arg-type]
        return chunks

    def flush(self) -> list[JSONObject]:
        self._capture.answered = True
        return []


class ShadowPolicy:
    # It only watches answers (its respond() never changes one, and it samples OpenAI-front-door requests
    # only): it must not make the gateway read answers it could otherwise forward as the provider's bytes.
    observer = True

    def __init__(
        self,
        targets: Callable[[], Mapping[str, ShadowTarget]],
        call: ShadowCall,
        ledger: LedgerPolicy,
        events: RoutingEvents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._targets = targets  # the current config's shadows, by logical model name
        self._call = call
        self._ledger = ledger
        self._events = events
        self._rng = rng or random.Random()
        self._stats: dict[str, ShadowStats] = {}
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ADMIT (last): draw the sample; DISPATCH fills in the body it sends (core/dispatch.py).
    async def admit(self, ctx: RequestContext, route: Route) -> None:
        if ctx.endpoint != "chat" or ctx.front_door != "openai" or not route.logical:
            return
        target = self._targets().get(route.requested)
        if target is not None and self._rng.random() < target.sample:
            ctx.shadow = ShadowCapture()

    # RESPOND
    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        capture = ctx.shadow
        if capture is not None:
            text = _text(completion)
            if text is not None:
                capture.text, capture.answered = [text], True
        return None

    def stream_filter(self, ctx: RequestContext) -> _Collect | None:
        return _Collect(ctx.shadow) if ctx.shadow is not None else None

    # FINALIZE: must not raise or block.
    def on_finalize(self, ctx: RequestContext) -> None:
        capture = ctx.shadow
        if capture is None or capture.body is None or not ctx.routed or ctx.requested_model is None:
            return
        model = ctx.requested_model
        target = self._targets().get(model)
        if target is None:  # removed by a reload meanwhile
            return
        stats = self._stats.get(model)
        if stats is None or stats.candidate != target.key:
            stats = self._stats[model] = ShadowStats(model, target.key)
        if self._in_flight.get(model, 0) >= target.max_concurrency:
            stats.dropped += 1
            if self._events is not None:
                self._events.shadow(target.key, "dropped")
            return
        usage = ctx.usage
        primary = Outcome(
            latency_ms=ctx.elapsed_ms,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            cost_nanos=round((ctx.cost_usd or 0.0) * 1e9),
            error=(ctx.error_type or "error") if ctx.status >= 400 else None,
            text="".join(capture.text) if capture.answered else None,
        )
        primary_dep = ctx.deployment.label if ctx.deployment is not None else ""
        self._in_flight[model] = self._in_flight.get(model, 0) + 1
        task = asyncio.get_running_loop().create_task(
            self._mirror(ctx, model, target, stats, primary_dep, primary, capture.body)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mirror(
        self,
        ctx: RequestContext,
        model: str,
        target: ShadowTarget,
        stats: ShadowStats,
        primary_dep: str,
        primary: Outcome,
        body: JSONObject,
    ) -> None:
        started = time.perf_counter()
        usage: Usage | None = None
        status, error, text = 200, None, None
        try:
            req = chat_request_from_body({k: v for k, v in body.items() if k not in ("stream", "stream_options")})
            data, usage = await self._call(target.deployment, req)
            text = _text(data)
        except TollgateError as exc:
            status, error = exc.status, exc.type
        except asyncio.CancelledError:
            self._in_flight[model] -= 1
            raise
        except Exception:
            log.exception("shadow call to %s failed", target.key)
            status, error = 500, "api_error"
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._in_flight[model] -= 1
        try:
            nanos = self._ledger.record_shadow(ctx, target.deployment, usage, latency_ms, status, error)
            shadow = Outcome(
                latency_ms=latency_ms,
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
                cost_nanos=nanos,
                error=error,
                text=text,
            )
            stats.add(primary_dep, primary, shadow)
            if self._events is not None:
                self._events.shadow(target.key, "success" if error is None else "error")
        except Exception:  # recording must never take the process down
            log.exception("recording the shadow call to %s failed", target.key)

    def report(self, model: str) -> JSONObject | None:
        """The comparison for ``model`` (``None`` when it has no shadow in the current config)."""
        target = self._targets().get(model)
        if target is None:
            return None
        stats = self._stats.get(model)
        if stats is None or stats.candidate != target.key:
            stats = ShadowStats(model, target.key)
        return stats.report(target.sample, self._in_flight.get(model, 0))

    @property
    def models(self) -> list[str]:
        return sorted(self._targets())

    async def drain(self) -> None:
        """Wait for the shadow calls in flight (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # Service
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Shadow calls are expendable: cancel the ones in flight rather than delay shutdown."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
