"""ADMIT + FINALIZE: requests, tokens and parallel requests per key, user, team and org, the tightest winning.

ADMIT reserves, in one atomic step across every scope of the caller, one request on each requests-per-minute
counter, an upper-bound token estimate (prompt estimate + ``max_tokens``, or a configured default) on each
tokens-per-minute counter, and one slot on each parallel-requests gauge. If any of them does not fit, none is
taken and the caller gets 429 naming the scope and the limit. Because the estimate is reserved before the
call, concurrent requests cannot overshoot a token limit: only one request whose estimate alone exceeds the
whole limit is admitted, and only into an empty window (by at most that one request's worth).

FINALIZE replaces each token reservation with the real usage (input + output as the provider reported it,
also for streams and cut streams; 0 for a failed call that produced nothing; the reservation stands when a
successful call reported no usage) and frees the parallel slot. Requests per minute count every admitted
request, failed or not. FINALIZE must not block, so those store calls go through a queue drained by a
background task of this policy (``start()``/``stop()`` from the app lifespan; ``stop()`` flushes).

Every admitted or refused request gets OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
headers for its tightest scope; refusals also carry ``retry-after`` (whole seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
from typing import Literal

from tollgate.config.limits import RateLimitSettings
from tollgate.context import Limit, RequestContext, Scope
from tollgate.errors import RateLimitError, ServiceUnavailableError
from tollgate.policies.reservation import reserve_claims
from tollgate.routing.resolver import Route
from tollgate.state.counters import Charge, CounterStore, Decision, Settlement

log = logging.getLogger("tollgate.ratelimit")

Kind = Literal["rpm", "tpm", "input_tpm", "output_tpm", "max_parallel"]

SETTLE_BATCH = 256  # settlements per store call

_SCOPE_WORDS: dict[Scope, str] = {"key": "API key", "user": "user", "team": "team", "org": "organization"}


class _Item:
    """One counter a request was charged on, and what it counts."""

    __slots__ = ("charge", "kind", "scope")

    def __init__(self, kind: Kind, scope: Scope, charge: Charge) -> None:
        self.kind = kind
        self.scope = scope
        self.charge = charge


class _Hold:
    __slots__ = ("ctx", "items", "rid")

    def __init__(self, ctx: RequestContext, rid: str, items: list[_Item]) -> None:
        self.ctx = ctx  # kept alive so its id() cannot be reused by another request before FINALIZE
        self.rid = rid
        self.items = items


class _RateClaim:
    """A request's rate-limit charges, as one part of an atomic reservation (``policies.reservation``)."""

    __slots__ = ("charges", "ctx", "items", "policy", "rid")

    def __init__(self, policy: RateLimitPolicy, ctx: RequestContext, rid: str, items: list[_Item]) -> None:
        self.policy = policy
        self.ctx = ctx
        self.rid = rid
        self.items = items
        self.charges = [item.charge for item in items]

    def granted(self, decision: Decision) -> None:
        self.ctx.extra_headers.extend(_headers(self.items, decision))

    def shrink(self, decision: Decision) -> bool:
        return False  # a request either fits a rate limit or waits

    def refused(self, decision: Decision) -> RateLimitError | None:
        self.policy._held.pop(id(self.ctx), None)
        self.ctx.extra_headers.extend(_headers(self.items, decision))
        return self.policy._refusal(self.items, decision) if decision.refused >= 0 else None

    def unavailable(self) -> ServiceUnavailableError:
        self.policy._held.pop(id(self.ctx), None)
        self.policy.unavailable += 1
        return ServiceUnavailableError(
            "Rate limits cannot be checked right now because the gateway's rate-limit store is unreachable. "
            "Try again shortly.",
            code="rate_limiter_unavailable",
            headers={"retry-after": "1"},
        )


class RateLimitPolicy:
    def __init__(self, store: CounterStore, settings: RateLimitSettings | None = None) -> None:
        settings = settings or RateLimitSettings()
        self.store = store
        self._window_ms = settings.window_seconds * 1000
        self._lease_ms = settings.parallel_lease_seconds * 1000
        self._default_output = settings.default_max_output_tokens
        self._per = "per minute" if settings.window_seconds == 60 else f"per {settings.window_seconds} seconds"
        # Reservation ids must be unique across replicas sharing Redis, and cheap to make.
        self._node = secrets.token_hex(4) + ":"
        self._seq = itertools.count()
        self._held: dict[int, _Hold] = {}
        self._queue: asyncio.Queue[tuple[str, tuple[Settlement, ...]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.unavailable = 0  # requests refused with 503 because the store was unreachable (fail closed)

    async def start(self) -> None:
        """Start the background task that settles reservations (also started on the first admitted request)."""
        self._ensure_worker()

    async def flush(self) -> None:
        """Wait until every queued settlement reached the store."""
        if self._task is not None:
            await self._queue.join()

    async def stop(self) -> None:
        """Flush the queued settlements, then stop the background task. The store stays open (its owner closes it)."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    # ADMIT
    async def admit(self, ctx: RequestContext, route: Route) -> None:
        claim = self.claim(ctx, route, f"{self._node}{next(self._seq)}")
        if claim is not None:
            await reserve_claims(self.store, claim.rid, [claim])

    def claim(self, ctx: RequestContext, route: Route, rid: str) -> _RateClaim | None:
        """This request's charges on every limited scope (no I/O); see ``policies.reservation``."""
        principal = ctx.principal
        if principal is None or not principal.limits:
            return None
        self._ensure_worker()
        prompt = ctx.estimated_prompt_tokens
        if ctx.max_output_tokens is not None:
            output = ctx.max_output_tokens
        else:  # embeddings produce no output tokens: reserving the default would refuse them for nothing
            output = 0 if ctx.endpoint == "embeddings" else self._default_output
        items = self._items(principal.limits, prompt, output)
        if not items:
            return None
        # Held before the store call, so a request cancelled mid-call still releases whatever was taken.
        self._held[id(ctx)] = _Hold(ctx, rid, items)
        return _RateClaim(self, ctx, rid, items)

    def _items(self, limits: tuple[Limit, ...], prompt: int, output: int) -> list[_Item]:
        items: list[_Item] = []
        seen: dict[str, int] = {}
        window, lease = self._window_ms, self._lease_ms
        for lim in limits:
            scope = lim.scope
            name = f"{scope}:{lim.scope_id}"
            specs: tuple[tuple[Kind, int | None, int, int], ...] = (
                ("rpm", lim.rpm, 1, window),
                ("tpm", lim.tpm, prompt + output, window),
                ("input_tpm", lim.input_tpm, prompt, window),
                ("output_tpm", lim.output_tpm, output, window),
                ("max_parallel", lim.max_parallel, 1, lease),
            )
            for kind, limit, amount, length in specs:
                if limit is None:
                    continue
                # A request bigger than the whole limit reserves the limit: it gets in only when the window
                # is empty, and settles to its real size after.
                charge = Charge(f"{kind}:{name}", min(amount, limit), limit, length)
                at = seen.get(charge.key)
                if at is None:
                    seen[charge.key] = len(items)
                    items.append(_Item(kind, scope, charge))
                elif limit < items[at].charge.limit:  # the same scope listed twice: the tighter limit holds
                    items[at] = _Item(kind, scope, charge)
        return items

    def _refusal(self, items: list[_Item], decision: Decision) -> RateLimitError:
        item = items[decision.refused]
        who = _SCOPE_WORDS[item.scope]
        limit = item.charge.limit
        if item.kind == "max_parallel":
            # A slot frees when some request ends, which cannot be predicted: suggest a short wait.
            wait = 1
            message = f"Too many parallel requests: this {who} allows {limit} at once. Retry after a request finishes."
        else:
            wait = max(1, math.ceil(decision.retry_after_ms / 1000))
            what = {
                "rpm": "requests",
                "tpm": "tokens",
                "input_tpm": "input tokens",
                "output_tpm": "output tokens",
            }[item.kind]
            message = f"Rate limit reached for this {who}: {limit} {what} {self._per}. Try again in {wait}s."
        return RateLimitError(message, headers={"retry-after": str(wait)})

    # FINALIZE: must not raise or block.
    def on_finalize(self, ctx: RequestContext) -> None:
        hold = self._held.pop(id(ctx), None)
        if hold is None:
            return
        usage = ctx.usage
        settlements: list[Settlement] = []
        for item in hold.items:
            kind, charge = item.kind, item.charge
            if kind == "rpm":
                continue
            if kind == "max_parallel":
                actual = 0
            elif usage is None:
                actual = 0 if ctx.status >= 400 else charge.amount
            elif kind == "tpm":
                actual = usage.prompt_tokens + usage.completion_tokens
            elif kind == "input_tpm":
                actual = usage.prompt_tokens
            else:
                actual = usage.completion_tokens
            if actual != charge.amount or kind == "max_parallel":
                settlements.append(Settlement(charge.key, charge.amount, actual, charge.window_ms))
        if settlements:
            self._queue.put_nowait((hold.rid, tuple(settlements)))

    def _ensure_worker(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="rate-limit-settle")

    async def _drain(self) -> None:
        # Everything queued goes in one store call (one round trip on Redis), so settling keeps up with
        # admission however busy the event loop is.
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < SETTLE_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self.store.settle_many(batch)
            except Exception:  # one bad batch must not stop the others
                log.exception("rate-limit settlement failed")
            finally:
                for _ in batch:
                    queue.task_done()


def _headers(items: list[_Item], decision: Decision) -> list[tuple[bytes, bytes]]:
    """OpenAI's rate-limit headers for the scope with the least room left, for requests and for tokens."""
    requests: tuple[int, int, int] | None = None
    tokens: tuple[int, int, int] | None = None
    tokens_total = False
    for item, level in zip(items, decision.levels, strict=True):
        kind = item.kind
        if kind == "max_parallel":
            continue
        limit = item.charge.limit
        state = (max(0, limit - level.used), limit, level.reset_ms)
        if kind == "rpm":
            if requests is None or state[0] < requests[0]:
                requests = state
        elif kind == "tpm":
            # Total-token limits speak for "tokens" when there are any; input/output ones otherwise.
            if not tokens_total or tokens is None or state[0] < tokens[0]:
                tokens = state
            tokens_total = True
        elif not tokens_total and (tokens is None or state[0] < tokens[0]):
            tokens = state
    out: list[tuple[bytes, bytes]] = []
    for name, state_ in ((b"requests", requests), (b"tokens", tokens)):
        if state_ is not None:
            remaining, limit, reset = state_
            out.append((b"x-ratelimit-limit-" + name, str(limit).encode()))
            out.append((b"x-ratelimit-remaining-" + name, str(remaining).encode()))
            out.append((b"x-ratelimit-reset-" + name, duration(reset).encode()))
    return out


def duration(ms: int) -> str:
    """A wait in OpenAI's header format (Go's duration): ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds
