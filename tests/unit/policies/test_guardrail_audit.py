"""The guardrail audit writer: one record per decision, written in the background, bounded, flushed on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tollgate.context import GuardrailDecision, Principal, RequestContext
from tollgate.policies.guardrail_audit import GuardrailAuditPolicy
from tollgate.state.audit import AuditQuery, AuditRecord, MemoryAuditStore

MASK = GuardrailDecision("pii", "mask", "input", ("EMAIL",), 2, "ab" * 32)
BLOCK = GuardrailDecision("injection", "block", "input", ("override.ignore_previous",), 1, "cd" * 32)


class FlakyStore(MemoryAuditStore):
    """A memory audit store that refuses writes while ``down`` (a database that does not answer)."""

    down = False

    async def append_many(self, records: Sequence[AuditRecord]) -> None:
        if self.down:
            raise ConnectionError("database unavailable")
        await super().append_many(records)


def _ctx(*decisions: GuardrailDecision, request_id: str = "req-1") -> RequestContext:
    ctx = RequestContext(request_id=request_id, front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal = Principal(key_id="key_1", name="svc", role="user", team_id="pay", org_id="acme")
    ctx.requested_model = "gpt-4o-mini"
    ctx.status = 403 if any(d.action == "block" for d in decisions) else 200
    ctx.guardrail_decisions.extend(decisions)
    return ctx


async def test_each_decision_becomes_one_audit_record() -> None:
    store = FlakyStore()
    audit = GuardrailAuditPolicy(store, flush_interval=60)
    audit.on_finalize(_ctx(MASK, BLOCK))
    audit.on_finalize(_ctx(request_id="req-2"))  # no decision, no record
    assert store.records == []  # nothing written on the request's path
    await audit.flush()
    mask, block = store.records
    assert (mask.action, block.action) == ("guardrail.mask", "guardrail.block")
    assert (mask.actor_key_id, mask.actor_role, mask.target_type, mask.target_id) == (
        "key_1",
        "user",
        "request",
        "req-1",
    )
    assert mask.request_id == "req-1"
    assert mask.after == {
        "guardrail": "pii",
        "rules": ["EMAIL"],
        "count": 2,
        "phase": "input",
        "payload_hash": "ab" * 32,
        "endpoint": "chat",
        "model": "gpt-4o-mini",
        "status": 403,
        "team_id": "pay",
        "org_id": "acme",
    }
    assert block.after is not None and block.after["rules"] == ["override.ignore_previous"]
    assert audit.written == 2 and audit.dropped == 0


async def test_a_full_queue_drops_and_counts_and_an_outage_keeps_the_queue() -> None:
    store = FlakyStore()
    store.down = True
    audit = GuardrailAuditPolicy(store, max_queue=3, flush_interval=60)
    for i in range(5):
        audit.on_finalize(_ctx(MASK, request_id=f"req-{i}"))
    assert (audit.queued, audit.dropped) == (3, 2)
    await audit.flush()  # the database is down: the records wait
    assert audit.queued == 3 and audit.failures == 1 and store.records == []
    store.down = False
    await audit.flush()
    assert [r.target_id for r in store.records] == ["req-0", "req-1", "req-2"]  # in order, oldest first
    assert (audit.queued, audit.written, audit.dropped) == (0, 3, 2)


async def test_stop_writes_what_is_queued_and_later_records_are_counted_as_dropped() -> None:
    store = FlakyStore()
    audit = GuardrailAuditPolicy(store, flush_interval=60)  # the timer would not fire during the test
    await audit.start()
    audit.on_finalize(_ctx(MASK, BLOCK))
    await audit.stop()
    assert len(await store.query(AuditQuery(action="guardrail.*"))) == 2
    audit.on_finalize(_ctx(MASK))
    assert audit.dropped == 1 and audit.queued == 0
    await audit.stop()  # twice is fine


async def test_the_writer_writes_in_the_background() -> None:
    store = FlakyStore()
    audit = GuardrailAuditPolicy(store, batch_size=2, flush_interval=60)
    await audit.start()
    try:
        audit.on_finalize(_ctx(MASK, BLOCK))  # a full batch wakes the writer at once
        for _ in range(100):
            if len(store.records) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(store.records) == 2
    finally:
        await audit.stop()


async def test_stop_with_the_database_down_does_not_hang_and_counts_the_loss() -> None:
    store = FlakyStore()
    store.down = True
    audit = GuardrailAuditPolicy(store, flush_interval=60)
    await audit.start()
    audit.on_finalize(_ctx(MASK, BLOCK))
    await audit.stop()
    assert audit.dropped == 2 and audit.queued == 0 and store.records == []
