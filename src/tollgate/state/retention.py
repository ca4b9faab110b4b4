"""Data retention: ``tollgate prune`` deletes ledger rows and audit records older than ``storage.retention``.

Only raw rows go: the daily aggregates (``spend_daily``) that ``tollgate report`` and ``/admin/spend`` read
are kept, so past reports still answer; ``report --verify`` (aggregates against a full row scan) can only
agree for days whose rows are still there.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class PruneReport:
    ledger_rows: int | None  # rows deleted (or that would be, in a dry run); None when not asked
    audit_records: int | None
    dry_run: bool

    def render(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = [
            f"{verb} {n} {what}"
            for n, what in ((self.ledger_rows, "ledger row(s)"), (self.audit_records, "audit record(s)"))
            if n is not None
        ]
        return "; ".join(parts) + "." if parts else "nothing to prune: storage.retention sets no limit."


def cutoff(days: int | None, now: float) -> float | None:
    return None if days is None else now - days * DAY


def prune_sqlite(path: str, ledger_before: float | None, audit_before: float | None, dry_run: bool) -> PruneReport:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        counts: list[int | None] = []
        for table, column, before in (("ledger", "ts", ledger_before), ("audit_log", "at", audit_before)):
            if before is None:
                counts.append(None)
                continue
            where = f"FROM {table} WHERE {column} < ?"
            if dry_run:
                counts.append(int(conn.execute(f"SELECT count(*) {where}", (before,)).fetchone()[0]))
            else:
                counts.append(conn.execute(f"DELETE {where}", (before,)).rowcount)
        return PruneReport(counts[0], counts[1], dry_run)
    finally:
        conn.close()


async def prune_postgres(
    dsn: str, ledger_before: float | None, audit_before: float | None, dry_run: bool, *, schema: str | None = None
) -> PruneReport:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10, server_settings={"search_path": schema} if schema else None)
    try:
        counts: list[int | None] = []
        # The ledger's ts is a timestamptz; the audit log's ``at`` is epoch seconds.
        for table, column, before in (
            ("ledger", "ts", None if ledger_before is None else datetime.fromtimestamp(ledger_before, UTC)),
            ("audit_log", "at", audit_before),
        ):
            if before is None:
                counts.append(None)
                continue
            where = f"FROM {table} WHERE {column} < $1"
            if dry_run:
                counts.append(int(await conn.fetchval(f"SELECT count(*) {where}", before)))
            else:
                status = await conn.execute(f"DELETE {where}", before)  # "DELETE <n>"
                counts.append(int(status.split()[-1]))
        return PruneReport(counts[0], counts[1], dry_run)
    finally:
        await conn.close()


async def prune_url(
    url: str, ledger_days: int | None, audit_days: int | None, *, dry_run: bool = False, now: float | None = None
) -> PruneReport:
    """Prune the database a ``storage.database_url`` names; the schema must be migrated."""
    now = time.time() if now is None else now
    ledger_before, audit_before = cutoff(ledger_days, now), cutoff(audit_days, now)
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        path = (rest[1:] if rest.startswith("/") else rest) or ":memory:"
        return await asyncio.to_thread(prune_sqlite, path, ledger_before, audit_before, dry_run)
    if scheme in ("postgresql", "postgres"):
        return await prune_postgres(url, ledger_before, audit_before, dry_run)
    raise ValueError(f"nothing to prune in a {scheme}:// database (sqlite:///PATH or postgresql://... only)")
