"""The audit store's filters for guardrail events (action patterns, snapshot fields), on every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.test_key_store import POSTGRES_DSN, _postgres_problem
from tollgate.state.audit import AuditQuery, AuditRecord, AuditStore, new_audit_record
from tollgate.state.factory import open_storage
from tollgate.state.postgres import PostgresDatabase
from tollgate.state.postgres_keys import AUDIT_PG_MIGRATIONS, PostgresAuditStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def audit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    if request.param == "postgres":
        problem = await _postgres_problem()
        if problem is not None:
            message = f"PostgreSQL at {POSTGRES_DSN} does not answer ({problem}); start it to run this backend"
            if os.environ.get("CI"):
                pytest.fail(message + " (CI is set, so this cannot be skipped)")
            pytest.skip(message)
        db = PostgresDatabase(POSTGRES_DSN, AUDIT_PG_MIGRATIONS, schema=f"tg_test_{uuid.uuid4().hex[:16]}")
        try:
            yield PostgresAuditStore(db)
        finally:
            await db.drop_schema()
        return
    storage = open_storage("memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/a.db")
    try:
        yield storage.audit
    finally:
        await storage.close()


async def _fill(audit: AuditStore) -> list[AuditRecord]:
    rows = (
        ("team.create", "admin", None),
        ("guardrail.mask", "pii", "payments"),
        ("guardrail.block", "injection", "payments"),
        ("guardrail.block", "pii", "research"),
        ("guardrailx.odd", "pii", "payments"),  # shares the prefix's letters, not its dot
        ("guardrail.flag", "code", None),
    )
    made = []
    for i, (action, guardrail, team) in enumerate(rows):
        after = {"guardrail": guardrail, "team_id": team, "rules": ["EMAIL"], "count": 2}
        rec = new_audit_record(
            actor_key_id="k1",
            actor_role="user",
            action=action,
            target_type="request",
            target_id=f"req_{i}",
            before=None,
            after=after,
            at=2000.0 + i,
        )
        made.append(rec)
        await audit.append(rec)
    return made


async def _ids(audit: AuditStore, query: AuditQuery) -> list[str]:
    return [r.target_id for r in await audit.query(query)]


async def test_action_exact_and_prefix(audit: AuditStore) -> None:
    made = await _fill(audit)
    assert await _ids(audit, AuditQuery(action="guardrail.block")) == ["req_3", "req_2"]
    assert await _ids(audit, AuditQuery(action="guardrail.*")) == ["req_5", "req_3", "req_2", "req_1"]
    assert await _ids(audit, AuditQuery(exclude_action="guardrail.*")) == ["req_4", "req_0"]
    assert await _ids(audit, AuditQuery(action="guardrail.*", exclude_action="guardrail.block")) == ["req_5", "req_1"]
    # A LIKE wildcard in the pattern is a literal character, not "any".
    assert await _ids(audit, AuditQuery(action="guardrail_*")) == []
    assert (await audit.query(AuditQuery(action="guardrail.mask")))[0] == made[1]


async def test_snapshot_fields_and_combined_filters(audit: AuditStore) -> None:
    await _fill(audit)
    payments = AuditQuery(action="guardrail.*", fields=(("team_id", "payments"),))
    assert await _ids(audit, payments) == ["req_2", "req_1"]
    both = AuditQuery(action="guardrail.*", fields=(("team_id", "payments"), ("guardrail", "pii")))
    assert await _ids(audit, both) == ["req_1"]
    assert await _ids(audit, AuditQuery(fields=(("guardrail", "pii"),), since=2002.0, until=2004.0)) == ["req_3"]
    assert await _ids(audit, AuditQuery(fields=(("team_id", "nobody"),))) == []
    assert await _ids(audit, AuditQuery(action="guardrail.*", limit=2)) == ["req_5", "req_3"]


def test_field_names_are_checked() -> None:
    with pytest.raises(ValueError, match="not a field name"):
        AuditQuery(fields=(("team_id') OR 1=1 --", "x"),))


async def test_append_many_is_one_idempotent_batch(audit: AuditStore) -> None:
    made = [
        new_audit_record(
            actor_key_id="k1",
            actor_role="user",
            action="guardrail.mask",
            target_type="request",
            target_id=f"req_{i}",
            before=None,
            after={"guardrail": "pii", "rules": ["EMAIL"], "count": i},
            request_id=f"req_{i}",
            at=3000.0 + i,
        )
        for i in range(3)
    ]
    await audit.append_many([])
    await audit.append_many(made[:2])
    # Written again after a lost acknowledgement: one copy of each, and the new one added.
    await audit.append_many(made)
    assert await audit.query(AuditQuery()) == made[::-1]
