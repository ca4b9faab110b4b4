"""SQLite ledger: the embedded default, in the gateway's SQLite file (WAL), with daily aggregates."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date

import orjson

from tollgate.state.ledger import (
    SHADOW_ENDPOINT,
    SUM_COLUMNS,
    GroupBy,
    LedgerRow,
    SpendLine,
    aggregate,
    day_bounds,
    dimension_for,
    sort_lines,
    unique_rows,
)
from tollgate.state.ledger_sql import ROW_SUMS_SQL, latency_columns_migration, team_aggregates_backfill
from tollgate.state.sqlite import SQLiteDatabase

# Named and append-only, like every store's list (see sqlite.py). No ';' inside a statement: the
# migration runner splits on it.
LEDGER_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "ledger_0001_ledger_and_daily",
        """
    CREATE TABLE IF NOT EXISTS ledger (
        id TEXT NOT NULL UNIQUE,
        request_id TEXT NOT NULL,
        ts REAL NOT NULL,
        endpoint TEXT NOT NULL,
        key_id TEXT,
        user_id TEXT,
        team_id TEXT,
        org_id TEXT,
        requested_model TEXT,
        provider TEXT,
        upstream_model TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        latency_ms REAL NOT NULL,
        status INTEGER NOT NULL,
        error_type TEXT,
        cache_hit INTEGER NOT NULL,
        stream INTEGER NOT NULL,
        client_disconnected INTEGER NOT NULL,
        usage_estimated INTEGER NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
    CREATE INDEX IF NOT EXISTS ledger_request_id ON ledger (request_id);
    CREATE TABLE IF NOT EXISTS spend_daily (
        dim TEXT NOT NULL,
        day TEXT NOT NULL,
        value TEXT NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        PRIMARY KEY (dim, day, value)
    ) WITHOUT ROWID
    """,
    ),
    # Per-team aggregates (a team_admin's spend report) for rows stored before they were kept.
    ("ledger_0002_team_aggregates", team_aggregates_backfill("date(ts, 'unixepoch')")),
    # Cache savings on rows; cache hits, savings and latency (sum, buckets) on the aggregates, backfilled.
    ("ledger_0003_cache_savings_and_latency", latency_columns_migration("INTEGER", "date(ts, 'unixepoch')")),
)

COLUMNS = (
    "id",
    "request_id",
    "ts",
    "endpoint",
    "key_id",
    "user_id",
    "team_id",
    "org_id",
    "requested_model",
    "provider",
    "upstream_model",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_nanos",
    "latency_ms",
    "status",
    "error_type",
    "cache_hit",
    "stream",
    "client_disconnected",
    "usage_estimated",
    "tags",
    "cost_saved_nanos",
)
_COLS = ", ".join(COLUMNS)
_INSERT = f"INSERT INTO ledger ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})"
_UPSERT_DAILY = (
    f"INSERT INTO spend_daily (dim, day, value, {', '.join(SUM_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (3 + len(SUM_COLUMNS)))}) "
    "ON CONFLICT (dim, day, value) DO UPDATE SET " + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUM_COLUMNS)
)
_SUMS = ", ".join(ROW_SUMS_SQL.values())
_SUM_AGGREGATES = ", ".join(f"SUM({c})" for c in SUM_COLUMNS)
_ID_CHUNK = 500  # well under SQLite's bound-variable limit

SQLRow = tuple[str | int | float | None, ...]


def row_values(r: LedgerRow) -> SQLRow:
    return (
        r.id,
        r.request_id,
        r.ts,
        r.endpoint,
        r.key_id,
        r.user_id,
        r.team_id,
        r.org_id,
        r.requested_model,
        r.provider,
        r.upstream_model,
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.cost_nanos,
        r.latency_ms,
        r.status,
        r.error_type,
        int(r.cache_hit),
        int(r.stream),
        int(r.client_disconnected),
        int(r.usage_estimated),
        orjson.dumps(r.tags).decode(),
        r.cost_saved_nanos,
    )


def _str(v: object) -> str | None:
    return None if v is None else str(v)


def _int(v: object) -> int:
    return int(v) if isinstance(v, int | float | str) else 0


def _float(v: object) -> float:
    return float(v) if isinstance(v, int | float | str) else 0.0


def _from_values(v: Sequence[object]) -> LedgerRow:
    tags = orjson.loads(str(v[22]))
    return LedgerRow(
        id=str(v[0]),
        request_id=str(v[1]),
        ts=_float(v[2]),
        endpoint=str(v[3]),
        key_id=_str(v[4]),
        user_id=_str(v[5]),
        team_id=_str(v[6]),
        org_id=_str(v[7]),
        requested_model=_str(v[8]),
        provider=_str(v[9]),
        upstream_model=_str(v[10]),
        input_tokens=_int(v[11]),
        output_tokens=_int(v[12]),
        cached_tokens=_int(v[13]),
        cost_nanos=_int(v[14]),
        latency_ms=_float(v[15]),
        status=_int(v[16]),
        error_type=_str(v[17]),
        cache_hit=bool(v[18]),
        stream=bool(v[19]),
        client_disconnected=bool(v[20]),
        usage_estimated=bool(v[21]),
        tags={str(k): str(val) for k, val in tags.items()} if isinstance(tags, dict) else {},
        cost_saved_nanos=_int(v[23]),
    )


def _line(group: object, v: Sequence[object]) -> SpendLine:
    return SpendLine.of(str(group), [_int(x) for x in v])


class SQLiteLedgerStore:
    """Writes go through the database's single lock in one ``BEGIN IMMEDIATE`` transaction per batch."""

    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def write_batch(self, rows: Sequence[LedgerRow]) -> int:
        batch = unique_rows(rows)
        if not batch:
            return 0

        def tx(c: sqlite3.Connection) -> int:
            c.execute("BEGIN IMMEDIATE")
            try:
                existing: set[str] = set()
                for i in range(0, len(batch), _ID_CHUNK):
                    ids = [r.id for r in batch[i : i + _ID_CHUNK]]
                    marks = ",".join("?" * len(ids))
                    existing.update(x[0] for x in c.execute(f"SELECT id FROM ledger WHERE id IN ({marks})", ids))
                new = [r for r in batch if r.id not in existing]
                c.executemany(_INSERT, [row_values(r) for r in new])
                c.executemany(_UPSERT_DAILY, [(*key, *sums) for key, sums in aggregate(new)])
                c.execute("COMMIT")
                return len(new)
            except BaseException:
                c.execute("ROLLBACK")
                raise

        return await self._db.run(tx)

    async def spend(self, by: GroupBy, since: date, until: date, team: str | None = None) -> list[SpendLine]:
        group = "day" if by == "day" else "value"
        sql = (
            f"SELECT {group}, {_SUM_AGGREGATES} FROM spend_daily "
            f"WHERE dim = ? AND day >= ? AND day <= ? GROUP BY {group}"
        )
        args = (dimension_for(by, team), since.isoformat(), until.isoformat())
        rows = await self._db.run(lambda c: c.execute(sql, args).fetchall())
        return sort_lines([_line(r[0], r[1:]) for r in rows], by)

    async def scan_totals(self, since: date, until: date) -> SpendLine:
        start, end = day_bounds(since, until)
        row = await self._db.run(
            lambda c: c.execute(
                f"SELECT {_SUMS} FROM ledger WHERE ts >= ? AND ts < ? AND endpoint <> ?", (start, end, SHADOW_ENDPOINT)
            ).fetchone()
        )
        return _line("total", row)

    async def rows_for_request(self, request_id: str) -> list[LedgerRow]:
        rows = await self._db.run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM ledger WHERE request_id = ? ORDER BY ts", (request_id,)
            ).fetchall()
        )
        return [_from_values(r) for r in rows]
