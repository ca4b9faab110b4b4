"""ADMIT + RESPOND + FINALIZE: USD budgets per key, user, team and org that concurrent requests never overshoot.

ADMIT reserves the request's cost before it goes upstream, in one atomic all-or-nothing step on the period
counter of every budget of the caller (``budget:<scope>:<id>:<period>`` in the ``CounterStore``, integer
micro-dollars, rounded up). What is reserved:

* non-streaming requests (and streams when ``cut_streams_at_cap`` is off, or ``stream_reservation`` is
  ``worst_case``): the worst case, the most expensive candidate deployment's price of the prompt estimate
  plus ``max_tokens`` (or ``default_max_output_tokens``). Never overshoots; may refuse a request that would
  have fit.
* streams with ``stream_reservation: estimate`` and ``cut_streams_at_cap``: the prompt plus
  ``stream_reserve_output_tokens`` (or, when less is left, whatever is left), topped up in steps of the same
  size while the stream runs. The ``BudgetStreamFilter`` keeps a running cost from the streamed text and
  ends the stream cleanly when it would pass what is reserved and no top-up fits.

If a budget cannot take the reservation, nothing is taken and the caller gets ``BudgetExceededError`` naming
the scope and the period, never the key. FINALIZE settles every counter to the real cost (``ctx.cost_usd``,
priced by the ledger policy that runs first): the unused part of the reservation is refunded; a failure
that produced no usage settles to 0; a success without usage keeps its reservation. Store calls in
FINALIZE go through a queue drained by this policy's background task (``start()``/``stop()``), which also
hands each settled spend to the alerts (``budget_alerts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tollgate.config.budgets import BudgetSettings
from tollgate.context import Budget, RequestContext, Scope
from tollgate.errors import BudgetExceededError, ServiceUnavailableError
from tollgate.policies.budget_alerts import BudgetAlerts, BudgetLine
from tollgate.policies.reservation import reserve_claims
from tollgate.pricing import NANOS_PER_USD, ModelPrice, PriceBook
from tollgate.routing.budget_levels import BudgetLevels
from tollgate.routing.resolver import Route
from tollgate.state.counters import Charge, CounterStore, Decision, Settlement
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage

log = logging.getLogger("tollgate.budget")

MICROS_PER_USD = 1_000_000
SETTLE_BATCH = 64  # settlements per store call
ALERT_CONCURRENCY = 4  # alert checks of a batch in flight at once
# Counters outlive their period by this much, so a request that started before midnight still settles
# against the period it reserved in.
_TTL_MARGIN_MS = 86_400_000

SCOPE_WORDS: dict[Scope, str] = {"key": "API key", "user": "user", "team": "team", "org": "organization"}
_PERIOD_WORDS = {"daily": "for today", "weekly": "for this week", "monthly": "for this month", "total": "in total"}
# The endpoints whose streams go through stream filters (legacy completions are relayed as they come).
FILTERED_ENDPOINTS = frozenset({"chat", "messages"})
# Canonical chunk fields copied onto the chunks the filter makes up when it cuts a stream.
_BASE_FIELDS = ("id", "object", "created", "model", "system_fingerprint")


def micros_of_nanos(nanos: int) -> int:
    """Nano-dollars to whole micro-dollars, rounded up: a budget counter never shows less than was spent."""
    return -(-nanos // 1000)


def usd(value: float) -> str:
    """Dollars with cents, or with up to six decimals for amounts below a dollar that cents would hide."""
    text = f"{value:,.2f}"
    if value < 1 and round(value, 2) != round(value, 6):
        text = f"{value:.6f}".rstrip("0")
    return "$" + text


def period_of(period: str, now: float) -> tuple[str, float, float]:
    """The calendar period (UTC) holding ``now``: its label, start and end (epoch seconds; total: 0, inf)."""
    if period == "total":
        return "total", 0.0, math.inf
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end, label = day, day + timedelta(days=1), day.strftime("%Y-%m-%d")
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        iso = start.isocalendar()
        end, label = start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}"
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        label = start.strftime("%Y-%m")
    return label, start.timestamp(), end.timestamp()


def line_for(budget: Budget, now: float, period: tuple[str, float, float] | None = None) -> BudgetLine:
    label, start, end = period or period_of(budget.period, now)
    ttl = 0 if math.isinf(end) else int((end - now) * 1000) + _TTL_MARGIN_MS
    return BudgetLine(
        budget=budget,
        key=f"budget:{budget.scope}:{budget.scope_id}:{label}",
        limit=math.floor(budget.limit_usd * MICROS_PER_USD + 1e-6),
        ttl_ms=ttl,
        period_label=label,
        period_start=start,
    )


@dataclass(slots=True)
class _Hold:
    """What one admitted request reserved, shared by its stream filter and FINALIZE."""

    ctx: RequestContext  # kept alive so its id() cannot be reused by another request before FINALIZE
    rid: str
    lines: list[BudgetLine]
    reserved: int  # micro-dollars, the same on every line
    ceiling: int | None  # the most a stream may top up to (its worst case); None: the budget is the limit
    top_ups: int = 0
    topping: bool = False  # a top-up is in flight
    exhausted: bool = False  # a top-up was refused: the stream ends at what it holds
    finalized: bool = False


class _BudgetClaim:
    """A request's budget reservation, as one part of an atomic reservation (``policies.reservation``).

    The hold is registered only once the store said yes: a cumulative counter cannot tell whether a call
    cancelled midway took its amount, and an unknown reservation must stay counted (the budget's side)
    rather than be "refunded" without having been taken."""

    __slots__ = ("charges", "hold", "policy", "smallest")

    def __init__(self, policy: BudgetPolicy, hold: _Hold, smallest: int | None) -> None:
        self.policy = policy
        self.hold = hold
        self.smallest = smallest  # streams only: the least worth admitting them with (one output token)
        self.charges = self._charges(hold.reserved)

    def _charges(self, amount: int) -> list[Charge]:
        return [Charge(ln.key, amount, ln.limit, 0, ln.ttl_ms) for ln in self.hold.lines]

    def granted(self, decision: Decision) -> None:
        hold = self.hold
        self.policy._held[id(hold.ctx)] = hold
        self.policy._record(hold.lines, decision)
        left = min(line.limit - level.used for line, level in zip(hold.lines, decision.levels, strict=True))
        hold.ctx.extra_headers.append((b"x-tollgate-budget-remaining-usd", f"{max(0, left) / 1e6:.6f}".encode()))

    def shrink(self, decision: Decision) -> bool:
        if self.smallest is None:
            return False
        hold = self.hold
        left = min(line.limit - level.used for line, level in zip(hold.lines, decision.levels, strict=True))
        if left <= self.smallest or left >= hold.reserved:
            return False
        hold.reserved = left
        self.charges = self._charges(left)
        return True

    def refused(self, decision: Decision) -> BudgetExceededError | None:
        if decision.refused < 0:
            return None
        self.policy._record(self.hold.lines, decision)
        return self.policy._refusal(self.hold.lines, decision, self.hold.reserved)

    def unavailable(self) -> ServiceUnavailableError:
        self.policy.unavailable += 1
        return ServiceUnavailableError(
            "Budgets cannot be checked right now because the gateway's counter store is unreachable. "
            "Try again shortly.",
            code="budget_store_unavailable",
            headers={"retry-after": "1"},
        )


class BudgetPolicy:
    def __init__(
        self,
        store: CounterStore,
        prices: PriceBook,
        settings: BudgetSettings | None = None,
        *,
        alerts: BudgetAlerts | None = None,
        clock: Callable[[], float] = time.time,
        levels: BudgetLevels | None = None,
    ) -> None:
        self.settings = settings or BudgetSettings()
        # Where the levels the store reports are left for routing rules (``budget_remaining``); None: nowhere.
        self.levels = levels
        self.store = store
        self.prices = prices
        self.alerts = alerts
        self._clock = clock
        self._node = "b" + secrets.token_hex(4) + ":"
        self._seq = itertools.count()
        self._held: dict[int, _Hold] = {}
        self._periods: dict[str, tuple[str, float, float]] = {}
        self._queue: asyncio.Queue[tuple[str, tuple[Settlement, ...], list[BudgetLine], int]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._top_up_tasks: set[asyncio.Task[None]] = set()
        self.unavailable = 0  # requests refused with 503 because the store was unreachable (fail closed)
        self.cut_streams = 0  # streams ended at the budget

    # Lifecycle (a service of the app)
    async def start(self) -> None:
        self._ensure_worker()
        if self.alerts is not None:
            await self.alerts.start()

    async def flush(self) -> None:
        """Wait until every queued settlement reached the store (and its alerts were queued)."""
        if self._top_up_tasks:
            await asyncio.gather(*self._top_up_tasks, return_exceptions=True)
        if self._task is not None:
            await self._queue.join()

    async def stop(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.alerts is not None:
            await self.alerts.stop()

    # ADMIT
    async def admit(self, ctx: RequestContext, route: Route) -> None:
        claim = self.claim(ctx, route, f"{self._node}{next(self._seq)}")
        if claim is not None:
            await reserve_claims(self.store, claim.hold.rid, [claim])

    def claim(self, ctx: RequestContext, route: Route, rid: str) -> _BudgetClaim | None:
        """This request's reservation on every budget of the caller (no I/O); see ``policies.reservation``."""
        principal = ctx.principal
        if principal is None or not principal.budgets:
            return None
        self._ensure_worker()
        lines = self._lines(principal.budgets)
        settings = self.settings
        prompt = ctx.estimated_prompt_tokens
        if ctx.endpoint == "embeddings":
            worst_out = 0
        else:
            worst_out = (
                ctx.max_output_tokens if ctx.max_output_tokens is not None else settings.default_max_output_tokens
            )
        worst = self._estimate(route, prompt, worst_out)
        estimating = (
            ctx.stream
            and ctx.endpoint in FILTERED_ENDPOINTS
            and settings.cut_streams_at_cap
            and settings.stream_reservation == "estimate"
        )
        if estimating:
            amount = min(worst, self._estimate(route, prompt, settings.stream_reserve_output_tokens))
            ceiling = worst if ctx.max_output_tokens is not None else None
            # Less may be left than the estimate: a stream may still use what is left, and is cut there.
            smallest = self._estimate(route, prompt, 1)
        else:
            amount, ceiling, smallest = worst, worst, None
        return _BudgetClaim(self, _Hold(ctx, rid, lines, amount, ceiling), smallest)

    def _record(self, lines: list[BudgetLine], decision: Decision) -> None:
        """Leave the levels a reservation reported for routing rules: a refusal reports its refused line only."""
        levels = self.levels
        if levels is None:
            return
        for i, (line, level) in enumerate(zip(lines, decision.levels, strict=True)):
            if decision.allowed or i == decision.refused:
                b = line.budget
                period = self._periods.get(b.period)
                levels.record(b.scope, b.scope_id, b.period, level.used, period[2] if period else math.inf)

    def _lines(self, budgets: tuple[Budget, ...]) -> list[BudgetLine]:
        now = self._clock()
        by_key: dict[str, BudgetLine] = {}
        for budget in budgets:
            period = self._periods.get(budget.period)
            if period is None or now >= period[2] or now < period[1]:  # calendar math once per period
                period = self._periods[budget.period] = period_of(budget.period, now)
            line = line_for(budget, now, period)
            known = by_key.get(line.key)
            if known is None or line.limit < known.limit:  # the same scope listed twice: the tighter holds
                by_key[line.key] = line
        return list(by_key.values())

    def _estimate(self, route: Route, prompt: int, output: int) -> int:
        """Micro-dollars of the most expensive candidate (a fallback may serve the request); unpriced: 0."""
        nanos = 0
        for deployment in route.candidates:
            cost = self.prices.estimate_nanos(deployment, prompt, output)
            if cost is not None and cost > nanos:
                nanos = cost
        return micros_of_nanos(nanos)

    async def _reserve(self, rid: str, lines: list[BudgetLine], amount: int) -> Decision:
        return await self.store.reserve(rid, [Charge(ln.key, amount, ln.limit, 0, ln.ttl_ms) for ln in lines])

    def _refusal(self, lines: list[BudgetLine], decision: Decision, amount: int) -> BudgetExceededError:
        line = lines[decision.refused]
        budget = line.budget
        spent = decision.levels[decision.refused].used
        left = line.limit - spent
        who = SCOPE_WORDS[budget.scope]
        head = f"{who[0].upper()}{who[1:]} budget of {usd(budget.limit_usd)} {_PERIOD_WORDS[budget.period]}"
        cost = f"this request may cost up to {usd(amount / MICROS_PER_USD)}"
        if left <= 0 or spent >= 0.99 * line.limit:
            message = f"{head} is used up: {usd(spent / MICROS_PER_USD)} spent"
            if left > 0:
                message += f" ({cost})"
        else:
            message = (
                f"{head} cannot cover this request: {usd(spent / MICROS_PER_USD)} spent, "
                f"{usd(left / MICROS_PER_USD)} left, and {cost} (lower max_tokens to fit)"
            )
        err = BudgetExceededError(message + ".")
        err.status = self.settings.exceed_status
        return err

    # RESPOND
    def stream_filter(self, ctx: RequestContext) -> BudgetStreamFilter | None:
        if not self.settings.cut_streams_at_cap or not ctx.stream or ctx.endpoint not in FILTERED_ENDPOINTS:
            return None
        hold = self._held.get(id(ctx))
        if hold is None:
            return None
        return BudgetStreamFilter(self, hold)

    def top_up(self, hold: _Hold, step: int) -> None:
        """Ask for one more step of budget in the background; the filter cuts if it is not there in time."""
        if hold.topping or hold.exhausted or hold.finalized:
            return
        if hold.ceiling is not None:
            step = min(step, hold.ceiling - hold.reserved)
        if step <= 0:
            hold.exhausted = True
            return
        hold.topping = True
        task = asyncio.get_running_loop().create_task(self._run_top_up(hold, step))
        self._top_up_tasks.add(task)
        task.add_done_callback(self._top_up_tasks.discard)

    async def _run_top_up(self, hold: _Hold, step: int) -> None:
        hold.top_ups += 1
        rid = f"{hold.rid}:t{hold.top_ups}"
        try:
            decision = await self._reserve(rid, hold.lines, step)
        except Exception:  # unreachable and failing closed, or anything else: the stream ends at what it has
            hold.exhausted = True
            return
        finally:
            hold.topping = False
        if not decision.allowed:
            hold.exhausted = True
        elif hold.finalized:  # the request ended meanwhile: give the step back
            self._queue.put_nowait((rid, tuple(Settlement(ln.key, step, 0, 0, ln.ttl_ms) for ln in hold.lines), [], 0))
        else:
            hold.reserved += step
            self._record(hold.lines, decision)

    # FINALIZE: must not raise or block.
    def on_finalize(self, ctx: RequestContext) -> None:
        hold = self._held.pop(id(ctx), None)
        if hold is None:
            return
        hold.finalized = True
        actual = self.actual_micros(ctx, hold.reserved)
        levels = self.levels
        if levels is not None and actual != hold.reserved:
            for ln in hold.lines:  # the refund (or overrun) this settlement will make, known now
                b = ln.budget
                levels.settle(b.scope, b.scope_id, b.period, actual - hold.reserved)
        settlements = tuple(Settlement(ln.key, hold.reserved, actual, 0, ln.ttl_ms) for ln in hold.lines)
        self._queue.put_nowait((hold.rid, settlements, hold.lines, actual))

    def actual_micros(self, ctx: RequestContext, reserved: int) -> int:
        """What the request really cost, in micro-dollars, for settlement."""
        if ctx.cache_hit:
            return 0
        if ctx.usage is None:
            # Nothing measured: a failure produced nothing; a success that reported no usage keeps its reservation.
            return 0 if ctx.status >= 400 or ctx.deployment is None else reserved
        if ctx.cost_usd is not None:
            nanos = round(ctx.cost_usd * NANOS_PER_USD)
        else:
            nanos = self.prices.cost_nanos(ctx.deployment, ctx.usage)
        return micros_of_nanos(nanos)

    def _ensure_worker(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="budget-settle")

    async def _drain(self) -> None:
        # Everything queued is settled in one store call (one round trip on Redis); the alert checks of the
        # batch then run side by side.
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < SETTLE_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                changed = [(rid, st) for rid, st, _, _ in batch if any(s.actual != s.reserved for s in st)]
                if changed:
                    await self.store.settle_many(changed)
                alerts = self.alerts
                if alerts is not None:
                    due = [(rid, lines, actual) for rid, _, lines, actual in batch if lines and actual > 0]
                    # A few side by side: enough to overlap round trips, too few to take the connections
                    # that admission needs.
                    for start in range(0, len(due), ALERT_CONCURRENCY):
                        checks = [alerts.observe(*item) for item in due[start : start + ALERT_CONCURRENCY]]
                        for outcome in await asyncio.gather(*checks, return_exceptions=True):
                            if isinstance(outcome, Exception):
                                log.error("budget alert check failed: %s", outcome)
            except Exception:  # one bad batch must not stop the others
                log.exception("budget settlement failed")
            finally:
                for _ in batch:
                    queue.task_done()


class BudgetStreamFilter:
    """Counts a stream's output as it passes and ends it cleanly before its cost passes the reservation.

    Output tokens are approximated from the streamed text (content, refusal, reasoning, tool-call arguments)
    as ``max(ceil(utf8_bytes / 4), deltas)``: about four bytes per token for English and code, and never
    fewer tokens than text deltas, since providers send at least one token per delta. Bytes rather than
    characters keep the estimate on the safe side for non-Latin scripts (a CJK character is 3 bytes and
    about one token). The cut stream is charged this count (or the provider's, if it reported more).

    When the running cost comes within half a step of the reservation, a top-up is requested in the
    background; when a chunk would pass the reservation, the stream ends with that chunk withheld:
    a final chunk with ``finish_reason: "length"`` for every open choice, a usage chunk, and the front door
    ends the stream in the client's format. ``done`` tells the stream to close the upstream.
    """

    __slots__ = ("_base", "_bytes", "_choices", "_deltas", "_hold", "_policy", "_price", "_step", "cut", "done")

    def __init__(self, policy: BudgetPolicy, hold: _Hold) -> None:
        self._policy = policy
        self._hold = hold
        self._price: ModelPrice | None = None
        self._step = 0
        self._bytes = 0
        self._deltas = 0
        self._base: JSONObject = {}
        self._choices: set[int] = set()
        self.done = False
        self.cut = False

    def _prepare(self) -> None:
        ctx = self._hold.ctx
        price = self._policy.prices.price_of(ctx.deployment) if ctx.deployment is not None else None
        self._price = price if price is not None else ModelPrice(0.0)
        step_tokens = self._policy.settings.stream_reserve_output_tokens
        self._step = micros_of_nanos(self._price.cost_nanos(0, step_tokens))

    def tokens(self) -> int:
        return max(-(-self._bytes // 4), self._deltas)

    def _cost(self, tokens: int) -> int:
        assert self._price is not None
        return micros_of_nanos(self._price.cost_nanos(self._hold.ctx.estimated_prompt_tokens, tokens))

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        if self.done:
            return []
        if self._price is None:
            self._prepare()
        hold = self._hold
        out: list[JSONObject] = []
        for chunk in chunks:
            if not self._base:
                self._base = {k: chunk[k] for k in _BASE_FIELDS if k in chunk}
            size = self._observe(chunk)
            if size:
                tokens = max(-(-(self._bytes + size) // 4), self._deltas + 1)
                cost = self._cost(tokens)
                if cost > hold.reserved:  # a top-up still in flight is too late for this chunk: cut here
                    return out + self._end()
                self._bytes += size
                self._deltas += 1
                if cost + self._step // 2 >= hold.reserved:
                    self._policy.top_up(hold, self._step)
            out.append(chunk)
        return out

    def _observe(self, chunk: JSONObject) -> int:
        """UTF-8 bytes of output text in the chunk; also tracks which choices are still open."""
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return 0
        size = 0
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if isinstance(index, int):
                if choice.get("finish_reason"):
                    self._choices.discard(index)
                else:
                    self._choices.add(index)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                size += _text_bytes(delta)
        return size

    def _end(self) -> list[JSONObject]:
        self.done = self.cut = True
        self._policy.cut_streams += 1
        ctx = self._hold.ctx
        log.info("stream cut at its budget (request %s, about %d output tokens)", ctx.request_id, self.tokens())
        indices = sorted(self._choices) or [0]
        choices: list[JSONValue] = [
            {"index": i, "delta": {}, "logprobs": None, "finish_reason": "length"} for i in indices
        ]
        usage = self.final_usage(None)
        assert usage is not None
        return [
            {**self._base, "choices": choices},
            {**self._base, "choices": [], "usage": usage.to_openai()},
        ]

    def flush(self) -> list[JSONObject]:
        return []

    def final_usage(self, upstream: Usage | None) -> Usage | None:
        """The usage to charge: the provider's; for a cut stream or one without usage, at least what was counted."""
        if upstream is not None and not self.cut:
            return upstream
        counted = self.tokens()
        if upstream is None and counted == 0 and not self.cut:
            return None
        prompt = upstream.prompt_tokens if upstream is not None and upstream.prompt_tokens else 0
        return Usage(
            prompt_tokens=prompt or self._hold.ctx.estimated_prompt_tokens,
            completion_tokens=max(counted, upstream.completion_tokens if upstream is not None else 0),
            cached_tokens=upstream.cached_tokens if upstream is not None else 0,
            estimated=True,
        )


def _text_bytes(delta: JSONObject) -> int:
    size = 0
    for field in ("content", "refusal", "reasoning_content", "reasoning"):
        value = delta.get(field)
        if isinstance(value, str):
            size += len(value.encode())
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call.get("function")
                if isinstance(fn, dict):
                    for part in ("name", "arguments"):
                        value = fn.get(part)
                        if isinstance(value, str):
                            size += len(value.encode())
    return size
