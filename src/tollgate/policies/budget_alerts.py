"""Soft limits of budgets: threshold and burn-rate alerts, logged and sent to an HMAC-signed webhook with retries.

The budget policy hands every settled spend to ``observe`` from its background task, never from a request.
Alerts are decided on the budget's counter in the ``CounterStore`` (so replicas sharing Redis agree):

* **Threshold**: when a budget's counter (settled spend plus reservations in flight) reaches a configured
  fraction of its limit, once per budget, period and threshold. The "once" is itself a counter
  (``budget-alert:<budget counter>:<threshold>`` with a limit of 1): the first replica to take it sends.
* **Burn rate**: spend is also added to hourly counters; when the last hour's spend (the current hour plus
  the prorated previous one) exceeds ``burn_rate_factor`` times the average hourly spend of the period so
  far, at most once an hour per budget. Only once the period is two hours old and had spend before the
  last hour, so the first request of a day does not count as a burst; never for ``total`` budgets.

Each alert is a JSON object (``type``, ``scope``, ``id``, ``period``, ``period_label``, ``spent``,
``limit``, ``threshold``, ``ts``; USD amounts as numbers) logged as a warning on ``tollgate.budget`` and,
when ``webhook_url`` is set, POSTed with ``X-Tollgate-Signature: <hex HMAC-SHA256 of the body>`` by a
background sender that retries with exponential backoff. A full send queue drops alerts (logged), never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from tollgate.config.budgets import BudgetAlertSettings
from tollgate.context import Budget
from tollgate.state.counters import Charge, CounterStore
from tollgate.types import JSONObject

log = logging.getLogger("tollgate.budget")

_HOUR_MS = 3_600_000
_BIG = 2**50  # a limit the hourly spend counters never reach (they only count)
_MAX_QUEUE = 10_000
_MAX_BACKOFF = 60.0


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget of a request, resolved to the counter of its current period."""

    budget: Budget
    key: str  # the counter: budget:<scope>:<id>:<period label>
    limit: int  # micro-dollars
    ttl_ms: int  # 0 for total budgets (kept forever)
    period_label: str  # 2026-11-23, 2026-W48, 2026-11 or total
    period_start: float  # epoch seconds (0 for total)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Tollgate-Signature`` of a webhook body: hex HMAC-SHA256 keyed with the configured secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class BudgetAlerts:
    def __init__(
        self,
        store: CounterStore,
        settings: BudgetAlertSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or BudgetAlertSettings()
        self.store = store
        self._clock = clock
        self._fired: set[tuple[str, float]] = set()  # thresholds known to have fired (saves a store call)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(_MAX_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self.emitted = 0  # alerts raised by this process
        self.delivered = 0  # webhooks answered with 2xx
        self.failed = 0  # webhooks given up after every retry
        self.dropped = 0  # alerts not sent because the queue was full

    async def start(self) -> None:
        if self.settings.webhook_url:
            self._ensure_sender()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Give queued webhooks ``grace_seconds`` to go out, then stop the sender."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> None:
        """Wait until every queued webhook was delivered or given up (for tests)."""
        if self._task is not None:
            await self._queue.join()

    async def observe(self, rid: str, lines: list[BudgetLine], amount: int) -> None:
        """Check the budgets a request of ``amount`` micro-dollars just settled on: one store call, plus one
        per alert that fires (to make it fire once)."""
        settings = self.settings
        now = self._clock()
        hour = int(now // 3600)
        factor = settings.burn_rate_factor
        charges: list[Charge] = []
        for line in lines:
            charges.append(Charge(line.key, 0, line.limit, 0, line.ttl_ms))  # reads the period's spend
            if factor is not None and line.budget.period != "total":
                charges.append(Charge(f"budget-burn:{line.key}:{hour}", amount, _BIG, 0, 2 * _HOUR_MS))
                charges.append(Charge(f"budget-burn:{line.key}:{hour - 1}", 0, _BIG, 0, 2 * _HOUR_MS))
        if not settings.thresholds and len(charges) == len(lines):
            return
        levels = iter((await self.store.reserve(rid + ":r", charges)).levels)
        for line in lines:
            spent = next(levels).used
            for threshold in settings.thresholds:
                if spent >= threshold * line.limit and (line.key, threshold) not in self._fired:
                    await self._threshold(rid, line, threshold, spent, now)
            if factor is not None and line.budget.period != "total":
                this_hour, last_hour = next(levels).used, next(levels).used
                recent = this_hour + last_hour * (1 - (now % 3600) / 3600)
                await self._burn(rid, line, spent, recent, now, factor)

    async def _threshold(self, rid: str, line: BudgetLine, threshold: float, spent: int, now: float) -> None:
        if len(self._fired) > 100_000:
            self._fired.clear()
        self._fired.add((line.key, threshold))
        once = Charge(f"budget-alert:{line.key}:{threshold:g}", 1, 1, 0, line.ttl_ms)
        if (await self.store.reserve(rid + ":a", [once])).allowed:
            self._emit("budget.threshold", line, spent, now, {"threshold": threshold})

    async def _burn(self, rid: str, line: BudgetLine, spent: int, recent: float, now: float, factor: float) -> None:
        elapsed_hours = (now - line.period_start) / 3600
        if elapsed_hours < 2 or spent - recent <= 0:
            return  # no baseline yet: the first spend of a period is no burst
        average = spent / elapsed_hours
        if recent <= factor * average:
            return
        once = Charge(f"budget-burn-alert:{line.key}:{int(now // 3600)}", 1, 1, 0, 2 * _HOUR_MS)
        if (await self.store.reserve(rid + ":b", [once])).allowed:
            extra: JSONObject = {
                "last_hour": round(recent / 1e6, 6),
                "average_hourly": round(average / 1e6, 6),
                "factor": factor,
            }
            self._emit("budget.burn_rate", line, spent, now, extra)

    def _emit(self, kind: str, line: BudgetLine, spent: int, now: float, extra: JSONObject) -> None:
        budget = line.budget
        payload: JSONObject = {
            "type": kind,
            "scope": budget.scope,
            "id": budget.scope_id,
            "period": budget.period,
            "period_label": line.period_label,
            "spent": round(spent / 1e6, 6),
            "limit": budget.limit_usd,
            **extra,
            "ts": round(now, 3),
        }
        if "threshold" not in payload:
            payload["threshold"] = None
        body = orjson.dumps(payload)
        self.emitted += 1
        log.warning("budget alert %s", body.decode())
        if not self.settings.webhook_url:
            return
        self._ensure_sender()
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("budget alert webhook queue is full; alert dropped: %s", body.decode())

    def _ensure_sender(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_all(), name="budget-alerts")

    async def _send_all(self) -> None:
        settings = self.settings
        url = settings.webhook_url
        assert url is not None
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                body = await self._queue.get()
                try:
                    await self._deliver(session, url, body)
                finally:
                    self._queue.task_done()

    async def _deliver(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        settings = self.settings
        headers = {"content-type": "application/json", "user-agent": "tollgate-budget-alerts"}
        if settings.webhook_secret:
            headers["x-tollgate-signature"] = sign(settings.webhook_secret, body)
        delay = settings.webhook_backoff_seconds
        problem = ""
        for attempt in range(settings.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = type(exc).__name__
        self.failed += 1
        log.error("budget alert webhook failed after %d attempts (%s)", settings.webhook_retries + 1, problem)
