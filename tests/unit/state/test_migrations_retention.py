"""Retention (`tollgate prune`): ledger rows and audit records older than the limit go, newer ones and the
daily aggregates stay; a dry run only counts. On SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from tests.postgres import new_schema, require_postgres
from tollgate.cli import main
from tollgate.state.audit import AuditQuery, AuditRecord
from tollgate.state.factory import Storage
from tollgate.state.ledger import LedgerRow
from tollgate.state.postgres import PostgresStorage
from tollgate.state.retention import DAY, prune_postgres, prune_sqlite, prune_url
from tollgate.state.sqlite import SQLiteStorage

NOW = time.time()
OLD, RECENT = NOW - 40 * DAY, NOW - 2 * DAY


async def _fill(storage: Storage) -> None:
    rows = [
        LedgerRow(id=f"lg_{name}{i}", request_id=f"{name}-{i}", ts=ts, endpoint="chat", cost_nanos=1000)
        for name, ts in (("old", OLD), ("recent", RECENT))
        for i in range(3)
    ]
    assert await storage.ledger.write_batch(rows) == 6
    for name, at in (("old", OLD), ("recent", RECENT)):
        await storage.audit.append(AuditRecord(f"au_{name}", at, "master", "admin", "key.create", "key", "k1"))


async def _left(storage: Storage) -> tuple[list[str], list[str], int]:
    old_day = datetime.fromtimestamp(OLD, UTC).date()
    recent_day = datetime.fromtimestamp(RECENT, UTC).date()
    ids = [r.request_id for i in range(3) for r in await storage.ledger.rows_for_request(f"old-{i}")]
    ids += [r.request_id for i in range(3) for r in await storage.ledger.rows_for_request(f"recent-{i}")]
    audit = [r.id for r in await storage.audit.query(AuditQuery())]
    # The aggregates of both days are untouched: reports over pruned days still answer.
    lines = await storage.ledger.spend("day", old_day, recent_day)
    return ids, sorted(audit), sum(line.requests for line in lines)


async def test_sqlite_prune_keeps_recent_rows_and_aggregates(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    storage = SQLiteStorage(str(db))
    try:
        await _fill(storage)
        dry = prune_sqlite(str(db), NOW - 30 * DAY, NOW - 30 * DAY, dry_run=True)
        assert (dry.ledger_rows, dry.audit_records) == (3, 1) and "would delete 3 ledger row(s)" in dry.render()
        assert len((await _left(storage))[0]) == 6
        done = await prune_url(f"sqlite:///{db}", 30, None, now=NOW)
        assert (done.ledger_rows, done.audit_records) == (3, None)
        ids, audit, aggregated = await _left(storage)
        assert ids == ["recent-0", "recent-1", "recent-2"] and audit == ["au_old", "au_recent"] and aggregated == 6
        again = await prune_url(f"sqlite:///{db}", 30, 30, now=NOW)
        assert (again.ledger_rows, again.audit_records) == (0, 1)
        assert (await _left(storage))[1] == ["au_recent"]
    finally:
        await storage.close()


def test_cli_prune_reads_storage_retention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "t.db"

    async def fill() -> None:
        storage = SQLiteStorage(str(db))
        try:
            await _fill(storage)
        finally:
            await storage.close()

    asyncio.run(fill())
    config = tmp_path / "c.yaml"
    config.write_text(f"storage:\n  database_url: sqlite:///{db}\n  retention:\n    ledger_days: 30\n")
    assert main(["prune", "--config", str(config), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "would delete 3 ledger row(s)."
    assert main(["prune", "--config", str(config), "--audit-days", "10"]) == 0
    assert capsys.readouterr().out.strip() == "deleted 3 ledger row(s); deleted 1 audit record(s)."
    nothing = tmp_path / "n.yaml"
    nothing.write_text(f"storage:\n  database_url: sqlite:///{db}\n")
    assert main(["prune", "--config", str(nothing)]) == 0
    assert "nothing to prune" in capsys.readouterr().out


async def test_postgres_prune() -> None:
    url = require_postgres()
    schema = new_schema()
    storage = PostgresStorage(url, schema=schema)
    try:
        await _fill(storage)
        dry = await prune_postgres(url, NOW - 30 * DAY, NOW - 30 * DAY, True, schema=schema)
        assert (dry.ledger_rows, dry.audit_records) == (3, 1)
        done = await prune_postgres(url, NOW - 30 * DAY, NOW - 30 * DAY, False, schema=schema)
        assert (done.ledger_rows, done.audit_records) == (3, 1)
        ids, audit, aggregated = await _left(storage)
        assert ids == ["recent-0", "recent-1", "recent-2"] and audit == ["au_recent"] and aggregated == 6
    finally:
        await storage.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
