"""The fixed phases of every request, in order. Users enable and configure policies; they never reorder phases.

Each ordering constraint is stated next to the phase that depends on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import IntEnum
from typing import Protocol

from tollgate.context import RequestContext
from tollgate.policies.cache import PieceSource
from tollgate.routing.resolver import Route
from tollgate.types import JSONObject
from tollgate.wire.openai import Usage


class Phase(IntEnum):
    # Nothing may run before the caller is known: every later decision is per principal.
    AUTHENTICATE = 1
    # Cheap rejections (allow-lists, limits, budgets, size caps) before any expensive inspection,
    # and before the prompt is looked at, so an over-limit caller costs the gateway almost nothing.
    ADMIT = 2
    # Guardrails see the prompt before the cache does, so masked PII is what gets cached and compared.
    INSPECT = 3
    # A cache hit short-circuits to RESPOND and skips DISPATCH entirely.
    CACHE_LOOKUP = 4
    # Router + attempt loop; retries and fallbacks only until the first byte reaches the client.
    DISPATCH = 5
    # Output guards and per-request stream filters, on canonical chunks, before the client's encoder.
    RESPOND = 6
    # Always runs (finally), even when the client went away: usage, cost, ledger, metrics. Must not raise.
    FINALIZE = 7


class AdmitPolicy(Protocol):
    """An ADMIT-phase policy: raise a ``TollgateError`` to reject, return to let the request through.

    A policy that reserves something here (a rate-limit slot, budget) settles it in FINALIZE."""

    async def admit(self, ctx: RequestContext, route: Route) -> None: ...


class InspectPolicy(Protocol):
    """INSPECT: look at (and possibly rewrite) the canonical body the provider would see.

    Returns the body to send on: the same object when nothing changed, else a rewritten copy (the caller's
    body is never mutated). Raise a ``TollgateError`` to refuse the request."""

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject: ...


class RespondPolicy(Protocol):
    """RESPOND for non-streamed answers: a rewritten copy of the canonical completion, or ``None``."""

    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None: ...


class ReviewedStream(Protocol):
    """A stream an async output policy reviews: the front door awaits ``ready()`` before the response starts
    (it may read the whole stream there and raise a ``TollgateError``, still a plain HTTP error), then sends
    its pieces (which may raise later, as a terminal error event)."""

    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[list[JSONObject]]: ...

    async def aclose(self) -> None: ...

    async def ready(self) -> None: ...


class ReviewPolicy(Protocol):
    """RESPOND, asynchronously (an external service): after every ``RespondPolicy`` for non-streamed answers
    (a rewritten copy of the completion, or ``None``; raise a ``TollgateError`` to refuse the answer), and
    around the stream filters for streams."""

    async def review(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None: ...

    def review_stream(self, ctx: RequestContext, stream: PieceSource) -> ReviewedStream | None: ...


class StreamFilter(Protocol):
    """RESPOND-phase filter for one stream: sees canonical chunks in order, may hold some back."""

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]: ...

    def flush(self) -> list[JSONObject]: ...


class StreamFilterFactory(Protocol):
    """Builds a fresh filter per request, or ``None`` when the policy does not apply to it."""

    def stream_filter(self, ctx: RequestContext) -> StreamFilter | None: ...


class FinalizePolicy(Protocol):
    def on_finalize(self, ctx: RequestContext) -> None:
        """Record the outcome. Must not raise and must not block: I/O is queued for a background writer,
        since this runs after the answer was sent, also when the client went away."""
        ...
