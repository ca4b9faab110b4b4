"""PostgreSQL ledger: batch inserts via ``unnest`` with ``ON CONFLICT (id) DO NOTHING``, daily aggregates
updated in the same transaction from exactly the rows that were inserted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import orjson

from tollgate.state.ledger import (
    SHADOW_ENDPOINT,
    SUM_COLUMNS,
    GroupBy,
    LedgerRow,
    SpendLine,
    aggregate,
    dimension_for,
    sort_lines,
    unique_rows,
)
from tollgate.state.ledger_sql import ROW_SUMS_SQL, latency_columns_migration, team_aggregates_backfill
from tollgate.state.postgres import PostgresDatabase

log = logging.getLogger("tollgate.ledger")

# Named and append-only. Money is BIGINT nano-dollars: sums are exact (NUMERIC results, no float drift).
LEDGER_PG_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "ledger_0001_ledger_and_daily",
        """
    CREATE TABLE IF NOT EXISTS ledger (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        endpoint TEXT NOT NULL,
        key_id TEXT,
        user_id TEXT,
        team_id TEXT,
        org_id TEXT,
        requested_model TEXT,
        provider TEXT,
        upstream_model TEXT,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        status SMALLINT NOT NULL,
        error_type TEXT,
        cache_hit BOOLEAN NOT NULL,
        stream BOOLEAN NOT NULL,
        client_disconnected BOOLEAN NOT NULL,
        usage_estimated BOOLEAN NOT NULL,
        tags JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
    CREATE INDEX IF NOT EXISTS ledger_request_id ON ledger (request_id);
    CREATE TABLE IF NOT EXISTS spend_daily (
        dim TEXT NOT NULL,
        day DATE NOT NULL,
        value TEXT NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost_nanos BIGINT NOT NULL,
        PRIMARY KEY (dim, day, value)
    );
    """,
    ),
    # Per-team aggregates (a team_admin's spend report) for rows stored before they were kept.
    ("ledger_0002_team_aggregates", team_aggregates_backfill("(ts AT TIME ZONE 'UTC')::date")),
    # Cache savings on rows; cache hits, savings and latency (sum, buckets) on the aggregates, backfilled.
    ("ledger_0003_cache_savings_and_latency", latency_columns_migration("BIGINT", "(ts AT TIME ZONE 'UTC')::date")),
)

_INSERT = """
    INSERT INTO ledger (id, request_id, ts, endpoint, key_id, user_id, team_id, org_id, requested_model, provider,
        upstream_model, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, status, error_type,
        cache_hit, stream, client_disconnected, usage_estimated, tags, cost_saved_nanos)
    SELECT u.id, u.request_id, u.ts, u.endpoint, u.key_id, u.user_id, u.team_id, u.org_id, u.requested_model,
        u.provider, u.upstream_model, u.input_tokens, u.output_tokens, u.cached_tokens, u.cost_nanos, u.latency_ms,
        u.status, u.error_type, u.cache_hit, u.stream, u.client_disconnected, u.usage_estimated, u.tags::jsonb,
        u.cost_saved_nanos
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
        $16::float8[], $17::smallint[], $18::text[], $19::bool[], $20::bool[], $21::bool[], $22::bool[], $23::text[],
        $24::bigint[])
        AS u(id, request_id, ts, endpoint, key_id, user_id, team_id, org_id, requested_model, provider,
        upstream_model, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, status, error_type,
        cache_hit, stream, client_disconnected, usage_estimated, tags, cost_saved_nanos)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""
# Deltas arrive sorted by (dim, day, value), so concurrent replicas lock aggregate rows in one order.
_UPSERT_DAILY = (
    f"INSERT INTO spend_daily AS s (dim, day, value, {', '.join(SUM_COLUMNS)}) "
    "SELECT * FROM unnest($1::text[], $2::date[], $3::text[], "
    + ", ".join(f"${i}::bigint[]" for i in range(4, 4 + len(SUM_COLUMNS)))
    + ") ON CONFLICT (dim, day, value) DO UPDATE SET "
    + ", ".join(f"{c} = s.{c} + excluded.{c}" for c in SUM_COLUMNS)
)
_COLUMNS = (
    "id, request_id, ts, endpoint, key_id, user_id, team_id, org_id, requested_model, provider, upstream_model, "
    "input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, status, error_type, cache_hit, stream, "
    "client_disconnected, usage_estimated, tags::text AS tags, cost_saved_nanos"
)
_SUMS = ", ".join(ROW_SUMS_SQL.values())
_SUM_AGGREGATES = ", ".join(f"sum({c})" for c in SUM_COLUMNS)
_DEADLOCK_RETRIES = 3


def _columns(rows: Sequence[LedgerRow]) -> list[list[object]]:
    """Column-major arrays for ``unnest``: one round trip per batch whatever its size."""
    return [
        [r.id for r in rows],
        [r.request_id for r in rows],
        [datetime.fromtimestamp(r.ts, UTC) for r in rows],
        [r.endpoint for r in rows],
        [r.key_id for r in rows],
        [r.user_id for r in rows],
        [r.team_id for r in rows],
        [r.org_id for r in rows],
        [r.requested_model for r in rows],
        [r.provider for r in rows],
        [r.upstream_model for r in rows],
        [r.input_tokens for r in rows],
        [r.output_tokens for r in rows],
        [r.cached_tokens for r in rows],
        [r.cost_nanos for r in rows],
        [r.latency_ms for r in rows],
        [r.status for r in rows],
        [r.error_type for r in rows],
        [r.cache_hit for r in rows],
        [r.stream for r in rows],
        [r.client_disconnected for r in rows],
        [r.usage_estimated for r in rows],
        [orjson.dumps(r.tags).decode() for r in rows],
        [r.cost_saved_nanos for r in rows],
    ]


def _int(v: object) -> int:
    # sum() over BIGINT is NUMERIC (Decimal): exact, converted without a float in between.
    return int(v) if isinstance(v, int | Decimal) else 0


def _line(group: str, record: asyncpg.Record, first: int) -> SpendLine:
    return SpendLine.of(group, [_int(record[i]) for i in range(first, first + len(SUM_COLUMNS))])


def _row(r: asyncpg.Record) -> LedgerRow:
    tags = orjson.loads(r["tags"])
    return LedgerRow(
        id=r["id"],
        request_id=r["request_id"],
        ts=r["ts"].timestamp(),
        endpoint=r["endpoint"],
        key_id=r["key_id"],
        user_id=r["user_id"],
        team_id=r["team_id"],
        org_id=r["org_id"],
        requested_model=r["requested_model"],
        provider=r["provider"],
        upstream_model=r["upstream_model"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cached_tokens=r["cached_tokens"],
        cost_nanos=r["cost_nanos"],
        latency_ms=r["latency_ms"],
        status=r["status"],
        error_type=r["error_type"],
        cache_hit=r["cache_hit"],
        stream=r["stream"],
        client_disconnected=r["client_disconnected"],
        usage_estimated=r["usage_estimated"],
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
        cost_saved_nanos=r["cost_saved_nanos"],
    )


class PostgresLedgerStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def write_batch(self, rows: Sequence[LedgerRow]) -> int:
        batch = unique_rows(rows)
        if not batch:
            return 0
        by_id = {r.id: r for r in batch}
        columns = _columns(batch)
        pool = await self._db.pool()
        for attempt in range(_DEADLOCK_RETRIES + 1):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    inserted = await conn.fetch(_INSERT, *columns)
                    new = [by_id[rec["id"]] for rec in inserted]
                    deltas = aggregate(new)
                    if deltas:
                        sums = list(zip(*(d for _, d in deltas), strict=True))
                        await conn.execute(
                            _UPSERT_DAILY,
                            [k[0] for k, _ in deltas],
                            [date.fromisoformat(k[1]) for k, _ in deltas],
                            [k[2] for k, _ in deltas],
                            *(list(column) for column in sums),
                        )
                    return len(new)
            except asyncpg.exceptions.DeadlockDetectedError:
                # The whole transaction rolled back, so retrying the batch cannot double-count.
                if attempt == _DEADLOCK_RETRIES:
                    raise
                log.warning("ledger batch hit a deadlock; retrying (%d)", attempt + 1)
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def spend(self, by: GroupBy, since: date, until: date, team: str | None = None) -> list[SpendLine]:
        group = "day" if by == "day" else "value"
        pool = await self._db.pool()
        records = await pool.fetch(
            f"SELECT {group}, {_SUM_AGGREGATES} FROM spend_daily "
            f"WHERE dim = $1 AND day >= $2 AND day <= $3 GROUP BY {group}",
            dimension_for(by, team),
            since,
            until,
        )
        lines = [_line(r[0].isoformat() if by == "day" else r[0], r, 1) for r in records]
        return sort_lines(lines, by)

    async def scan_totals(self, since: date, until: date) -> SpendLine:
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
        pool = await self._db.pool()
        record = await pool.fetchrow(
            f"SELECT {_SUMS} FROM ledger WHERE ts >= $1 AND ts < $2 AND endpoint <> $3", start, end, SHADOW_ENDPOINT
        )
        assert record is not None  # an aggregate query always returns one row
        return _line("total", record, 0)

    async def rows_for_request(self, request_id: str) -> list[LedgerRow]:
        pool = await self._db.pool()
        records = await pool.fetch(f"SELECT {_COLUMNS} FROM ledger WHERE request_id = $1 ORDER BY ts", request_id)
        return [_row(r) for r in records]
