"""FINALIZE: one audit record per guardrail decision, written off the hot path by a background writer.

``on_finalize`` turns each ``GuardrailDecision`` the guards left in the request context into an
``AuditRecord`` (action ``guardrail.<action>``, target the request) and appends it to an in-memory queue:
no I/O, no await. The writer (a gateway service) writes the queue in batches (one transaction each) every
``flush_interval`` seconds, or as soon as ``batch_size`` records wait; ``stop()`` writes what is left. A
record holds what the guard did (guard, rules or entity types, count, phase, a SHA-256 of the inspected
texts) and who asked, never the text.

The queue is bounded: while the database does not answer, the writer backs off and keeps the queue; a
record that finds the queue full is dropped and counted (``dropped``, exported as
``tollgate_guardrail_audit_records_total{outcome="dropped"}``). Unlike the spend ledger, these records are
not spooled to disk: a decision is also counted in metrics and logged by the guard, and an outage of the
database long enough to fill the queue should not turn into unbounded disk use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from tollgate.context import GuardrailDecision, RequestContext
from tollgate.state.audit import AuditRecord, AuditStore, new_audit_record
from tollgate.types import JSONObject

log = logging.getLogger("tollgate.guardrails")

ACTION_PREFIX = "guardrail."
TARGET_TYPE = "request"


def audit_record(ctx: RequestContext, decision: GuardrailDecision) -> AuditRecord:
    """The audit record of one decision about one finished request."""
    p = ctx.principal
    after: JSONObject = {
        "guardrail": decision.guardrail,
        "rules": list(decision.rules),
        "count": decision.count,
        "phase": decision.phase,
        "payload_hash": decision.payload_hash,
        "endpoint": ctx.endpoint,
        "model": ctx.requested_model,
        "status": ctx.status,
        "team_id": p.team_id if p is not None else None,
        "org_id": p.org_id if p is not None else None,
    }
    return new_audit_record(
        actor_key_id=p.key_id if p is not None else "-",
        actor_role=p.role if p is not None else "-",
        action=ACTION_PREFIX + decision.action,
        target_type=TARGET_TYPE,
        target_id=ctx.request_id,
        before=None,
        after=after,
        request_id=ctx.request_id,
        at=ctx.started_at,
    )


class GuardrailAuditPolicy:
    """The guardrail audit writer: a FINALIZE policy, and a service started and stopped with the gateway."""

    def __init__(
        self,
        store: AuditStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval: float = 0.5,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        write_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._write_timeout = write_timeout
        self._queue: deque[AuditRecord] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._running = False
        self._stopped = False
        self._backoff = 0.0
        self.written = 0  # records the store accepted
        self.dropped = 0  # records lost to a full queue (or finalized after stop)
        self.failures = 0  # failed writes (each retried later)

    # FINALIZE (sync, on the request's path: must not raise, must not block)
    def on_finalize(self, ctx: RequestContext) -> None:
        decisions = ctx.guardrail_decisions
        if not decisions:
            return
        if self._stopped:  # after shutdown: nothing would write it
            self.dropped += len(decisions)
            return
        queue = self._queue
        for decision in decisions:
            if len(queue) >= self.max_queue:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("guardrail audit queue full (%d): %d record(s) dropped so far", len(queue), self.dropped)
                continue
            queue.append(audit_record(ctx, decision))
        if len(queue) >= self.batch_size:
            self._wake()

    @property
    def queued(self) -> int:
        return len(self._queue)

    # Lifespan
    async def start(self) -> None:
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._running = True
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name="tollgate-guardrail-audit-writer")

    async def stop(self) -> None:
        """Write everything queued (one try per record if the store fails), then stop. Safe to call twice."""
        if not self._running:
            return
        self._running = False
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None
        self._backoff = 0.0
        await self._drain(final=True)
        self._stopped = True

    async def flush(self) -> None:
        """Write everything queued now (tests, shutdown)."""
        self._backoff = 0.0
        await self._drain()

    # Writer
    def _wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(event.set)

    async def _run(self) -> None:
        assert self._event is not None
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=max(self.flush_interval, self._backoff))
            self._event.clear()
            try:
                await self._drain()
            except Exception:  # the writer must outlive any one failure
                log.exception("guardrail audit writer pass failed")

    async def _drain(self, *, final: bool = False) -> None:
        """Write the queue batch by batch, oldest first; on a failure keep the batch (or, at shutdown, count
        what is left as dropped) and back off. Batches are idempotent, so one written twice is recorded once."""
        async with self._lock:
            queue = self._queue
            while queue:
                batch = [queue[i] for i in range(min(self.batch_size, len(queue)))]
                try:
                    await asyncio.wait_for(self.store.append_many(batch), timeout=self._write_timeout)
                except Exception as exc:
                    self.failures += 1
                    if final:
                        self.dropped += len(queue)
                        log.error("guardrail audit: %d record(s) not written at shutdown (%s)", len(queue), exc)
                        queue.clear()
                        return
                    self._backoff = min(self._retry_max, max(self._retry_min, self._backoff * 2))
                    log.warning("guardrail audit write failed (%s); retrying in %.1fs", exc, self._backoff)
                    return
                for _ in batch:
                    queue.popleft()
                self.written += len(batch)
                self._backoff = 0.0
