"""FINALIZE: price each request, record it in the spend ledger off the hot path, and lose nothing.

``on_finalize`` builds one row and appends it to an in-memory queue (a deque append: no I/O, no await).
A background writer takes batches (``batch_size`` rows, or whatever arrived within ``flush_interval``)
and writes each in one transaction. When the database fails, the batch goes to the local spool (fsync'd
JSON lines) and the writer backs off; spooled rows are replayed in order before any newer row is
written, at start and as soon as the database answers again. A full queue also spills to the spool
rather than dropping rows. Ledger writes are idempotent per row id, so a batch that committed but whose
acknowledgement was lost, then replayed from the spool, is still recorded exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from tollgate.context import RequestContext
from tollgate.pricing import NANOS_PER_USD, PriceBook
from tollgate.providers.base import Deployment
from tollgate.routing.split import ARM_TAG
from tollgate.state.ledger import SHADOW_ENDPOINT, LedgerRow, LedgerStore, clean_tags
from tollgate.state.ledger_journal import LedgerJournal
from tollgate.state.ledger_spool import LedgerSpool
from tollgate.wire.openai import Usage

log = logging.getLogger("tollgate.ledger")

SPOOL_FILE = "ledger-spool.jsonl"
# The tag of a shadow call's row naming the request it mirrored.
SHADOW_OF_TAG = "tollgate_shadow_of"

# The semantic cache's own embeddings calls (core/cache_embeddings.py): rows attributed to the caller, tagged with
# the request they were made for.
CACHE_EMBEDDING_ENDPOINT = "cache_embedding"
CACHE_EMBEDDING_FOR_TAG = "tollgate_cache_embedding_for"

# The endpoints that call (or would have called) a model: one ledger row per request to these.
METERED_ENDPOINTS = frozenset(
    {"chat", "embeddings", "completions", "messages", "simple_chat", CACHE_EMBEDDING_ENDPOINT}
)


class LedgerPolicy:
    """The ledger writer. ``start()``/``stop()`` belong to the app lifespan; ``stop()`` writes or spools
    every queued row before it returns. Rows finalized after ``stop()`` go straight to the spool."""

    def __init__(
        self,
        store: LedgerStore,
        prices: PriceBook,
        spool_path: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_queue: int = 50_000,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        write_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        journal: bool = True,
    ) -> None:
        self.store = store
        self.prices = prices
        self.spool = LedgerSpool(spool_path)
        # Every queued row is also on disk at once, so a killed process loses none (state/ledger_journal.py).
        self.journal = LedgerJournal(spool_path) if journal else None
        self._journaled = False  # rows journaled since the last seal
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._write_timeout = write_timeout
        self._clock = clock
        self._queue: deque[LedgerRow] = deque()
        # Row ids unique across processes and replicas without a syscall per row: 64 random bits + a counter.
        self._id_prefix = "lg_" + secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake_pending = False
        self._drain_lock = asyncio.Lock()
        self._running = False
        self._stopped = False
        self._retry_at = 0.0  # monotonic time before which the database is not tried again
        self._backoff = 0.0
        self.written = 0  # rows the database newly accepted
        self.spooled = 0  # rows that went to the spool
        self.failures = 0  # failed database writes

    # FINALIZE (sync, on the request's path: must not raise, must not block)
    def on_finalize(self, ctx: RequestContext) -> None:
        if ctx.endpoint not in METERED_ENDPOINTS:
            return  # admin calls, model lists and token counts cost nothing and are audited elsewhere
        self._enqueue(self.row_for(ctx))
        if len(self._queue) >= self.batch_size and not self._wake_pending:
            self._wake()

    def row_for(self, ctx: RequestContext) -> LedgerRow:
        """The ledger row for a finished request; also sets ``ctx.cost_usd`` if no one priced it yet."""
        dep, usage, principal = ctx.deployment, ctx.usage, ctx.principal
        saved = 0
        if ctx.cache_hit:
            nanos = 0  # served by the gateway's cache: the provider charged nothing
            saved = ctx.cost_saved_nanos
        elif ctx.cost_usd is not None:
            nanos = round(ctx.cost_usd * NANOS_PER_USD)
        else:
            nanos = self.prices.cost_nanos(dep, usage)
        ctx.cost_usd = nanos / NANOS_PER_USD
        return LedgerRow(
            id=f"{self._id_prefix}{next(self._ids):010x}",
            request_id=ctx.request_id,
            ts=round(ctx.started_at, 6),  # microseconds: what PostgreSQL keeps, so days agree everywhere
            endpoint=ctx.endpoint,
            key_id=principal.key_id if principal else None,
            user_id=principal.user_id if principal else None,
            team_id=principal.team_id if principal else None,
            org_id=principal.org_id if principal else None,
            requested_model=ctx.requested_model,
            provider=dep.provider if dep else None,
            upstream_model=dep.model if dep else None,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            cost_nanos=nanos,
            latency_ms=round(ctx.elapsed_ms, 3),
            status=ctx.status,
            error_type=ctx.error_type,
            cache_hit=ctx.cache_hit,
            stream=ctx.stream,
            client_disconnected=ctx.client_disconnected,
            usage_estimated=usage.estimated if usage else False,
            tags=_tags(ctx),
            cost_saved_nanos=saved,
        )

    def record_shadow(
        self,
        of: RequestContext,
        dep: Deployment,
        usage: Usage | None,
        latency_ms: float,
        status: int,
        error_type: str | None,
    ) -> int:
        """Queue the row of a shadow call made for request ``of`` (policies/shadow.py); returns its cost in
        nano-dollars. The row names no key, user, team or org, its endpoint is ``shadow`` and the daily
        aggregates skip it, so no tenant's spend report, total or budget ever includes it."""
        nanos = self.prices.cost_nanos(dep, usage)
        row = LedgerRow(
            id=f"{self._id_prefix}{next(self._ids):010x}",
            request_id=f"{of.request_id}:shadow",
            ts=round(time.time(), 6),
            endpoint=SHADOW_ENDPOINT,
            requested_model=of.requested_model,
            provider=dep.provider,
            upstream_model=dep.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0,
            cost_nanos=nanos,
            latency_ms=round(latency_ms, 3),
            status=status,
            error_type=error_type,
            usage_estimated=usage.estimated if usage else False,
            tags={SHADOW_OF_TAG: of.request_id},
        )
        self._enqueue(row)
        return nanos

    def _enqueue(self, row: LedgerRow) -> None:
        if self._stopped or len(self._queue) >= self.max_queue:
            # Overload or shutdown: the one case that does disk I/O here, because dropping is worse.
            self._spool_now([row])
            return
        journal = self.journal
        if journal is not None and self._running:
            journal.append(row)  # one write to the page cache: survives a kill of this process
            self._journaled = True
        self._queue.append(row)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # Lifespan
    async def start(self) -> None:
        """Start the writer on the running loop; spooled rows from an earlier run are replayed first."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._stopped = False
        if self.journal is not None:
            # Rows an earlier run journaled but may not have written (it was killed): into the spool, which
            # the first pass replays (rows the database already has are skipped by id).
            for left in await asyncio.to_thread(self.journal.open):
                count = await asyncio.to_thread(self.spool.adopt, left)
                if count:
                    log.warning("ledger: %d row(s) recovered from the journal of an earlier run (%s)", count, left.name)
        self._running = True
        self._event.set()  # first pass at once: replay what an earlier run left in the spool
        self._task = asyncio.create_task(self._run(), name="tollgate-ledger-writer")

    async def stop(self) -> None:
        """Write (or spool) everything queued, then stop. Safe to call twice."""
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None
        self._stopped = True
        # Rows queued between the writer's last pass and the flag above.
        try:
            await self._drain()
        except OSError:
            log.critical("ledger: %d row(s) could be neither written nor spooled at shutdown", len(self._queue))
        else:
            if self.journal is not None:
                self.journal.close()
                self.journal.release(self.journal.seal_all())

    async def flush(self) -> None:
        """Write everything queued now and replay the spool if the database answers (tests, admin)."""
        self._retry_at = 0.0
        await self._drain()

    # Writer
    def _wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        self._wake_pending = True
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop closed meanwhile
            self._wake_pending = False

    async def _run(self) -> None:
        assert self._event is not None
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=self.flush_interval)
            self._event.clear()
            self._wake_pending = False
            try:
                await self._drain()
            except Exception:  # the writer must outlive any one failure
                log.exception("ledger writer pass failed")

    async def _drain(self) -> None:
        # One drain at a time (the writer, flush() and stop() may overlap): two replays of one spool
        # file would be harmless for the ledger, but one could delete a file the other just took.
        async with self._drain_lock:
            journal = self.journal
            sealed = 0
            if journal is not None and self._journaled:
                # Rows journaled from here on go to a new segment; the sealed ones are all queued now.
                self._journaled = False
                sealed = await asyncio.to_thread(journal.seal)
            await self._drain_locked()
            if sealed:  # every row of the sealed segments is in the database or the spool now
                await asyncio.to_thread(journal.release, sealed)  # type: ignore[union-attr]

    async def _drain_locked(self) -> None:
        """Replay the spool when due, then write the queue batch by batch. While the database is
        unavailable, the queue goes to the spool behind what is already there, keeping the order."""
        while True:
            if self.spool.pending() and (not self._db_due() or not await self._replay()):
                await self._spool_queue()
                return
            if not self._queue:
                return
            batch = self._take(self.batch_size)
            if not self._db_due():
                await self._spool_async(batch)
                continue
            if not await self._write(batch):
                await self._spool_async(batch)

    def _take(self, n: int) -> list[LedgerRow]:
        out: list[LedgerRow] = []
        queue = self._queue
        while queue and len(out) < n:
            out.append(queue.popleft())
        return out

    def _db_due(self) -> bool:
        return self._clock() >= self._retry_at

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        self._backoff = min(self._retry_max, max(self._retry_min, self._backoff * 2))
        self._retry_at = self._clock() + self._backoff
        log.warning(
            "ledger database unavailable (%s: %s: %s); spooling to %s, retrying in %.1fs",
            what,
            type(exc).__name__,
            exc,
            self.spool.path,
            self._backoff,
        )

    def _recovered(self) -> None:
        if self._backoff:
            log.info("ledger database is back")
        self._backoff = 0.0
        self._retry_at = 0.0

    async def _write(self, batch: Sequence[LedgerRow]) -> bool:
        try:
            self.written += await asyncio.wait_for(self.store.write_batch(batch), self._write_timeout)
        except Exception as exc:
            self._failed("write", exc)
            return False
        self._recovered()
        return True

    async def _replay(self) -> bool:
        async def write(rows: Sequence[LedgerRow]) -> int:
            return await asyncio.wait_for(self.store.write_batch(rows), self._write_timeout)

        try:
            self.written += await self.spool.replay(write, self.batch_size)
        except Exception as exc:
            self._failed("spool replay", exc)
            return False
        self._recovered()
        return True

    async def _spool_queue(self) -> None:
        # Rows are safer on disk than in memory while the database is away (a crash loses memory).
        while self._queue:
            await self._spool_async(self._take(self.batch_size))

    async def _spool_async(self, rows: list[LedgerRow]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, rows)
        except OSError:
            log.exception("ledger spool %s is not writable; keeping %d row(s) in memory", self.spool.path, len(rows))
            self._queue.extendleft(reversed(rows))
            raise
        self.spooled += len(rows)

    def _spool_now(self, rows: list[LedgerRow]) -> None:
        try:
            self.spool.append(rows)
            self.spooled += len(rows)
        except OSError:
            # Nowhere left to put it: keep it in memory past the bound rather than lose it.
            log.exception("ledger spool %s is not writable; queueing past the limit", self.spool.path)
            self._queue.extend(rows)


def _tags(ctx: RequestContext) -> dict[str, str]:
    """The request's tags, plus the traffic-split arm it was assigned to (routing/split.py)."""
    tags = clean_tags(ctx.metadata)
    tags.pop(ARM_TAG, None)  # the gateway's own tag: a client cannot set it
    if ctx.route_arm is not None:
        tags[ARM_TAG] = ctx.route_arm
    return tags
