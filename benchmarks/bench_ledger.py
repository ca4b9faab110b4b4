#!/usr/bin/env python3
"""Spend ledger benchmark: rows/s the writer sustains into SQLite and PostgreSQL, and report time at 1M rows.

  python3 benchmarks/bench_ledger.py                      # SQLite and PostgreSQL, 1M-row report test
  python3 benchmarks/bench_ledger.py --rows 200000 --no-postgres

1. Writer: N requests finalized through ``LedgerPolicy.on_finalize`` (the hot-path cost per row is
   printed too), drained by the background writer in batches of 500 into the real store; rows/s is
   N / drain time. Also raw ``write_batch`` throughput (rows/s with aggregates maintained).
2. Reports: a ledger of ``--rows`` synthetic rows over 90 days (PostgreSQL: COPY; SQLite: executemany),
   aggregates built from it, then the time of every ``--by`` report over 30 days (read from the
   aggregates) against a full range scan of the ledger rows (what a report without aggregates costs).

PostgreSQL: ``$TOLLGATE_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test), in a
throwaway schema dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tollgate.context import Principal, RequestContext
from tollgate.policies.ledger import LedgerPolicy
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment
from tollgate.state.ledger import GROUP_BYS, SUM_COLUMNS, LedgerRow, LedgerStore
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.ledger_sql import ROW_SUMS_SQL
from tollgate.state.ledger_sqlite import COLUMNS, LEDGER_MIGRATIONS, SQLiteLedgerStore, row_values
from tollgate.state.postgres import PostgresDatabase
from tollgate.state.sqlite import SQLiteDatabase
from tollgate.wire.openai import Usage

PG_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5.4-mini", "o4-mini", "claude-haiku-4-5", "claude-sonnet-4-6")
START = date(2026, 1, 1)
DAYS = 90


def contexts(n: int) -> list[RequestContext]:
    rnd = random.Random(1)
    out = []
    for i in range(n):
        model = rnd.choice(MODELS)
        ptype = "anthropic" if model.startswith("claude") else "openai"
        ctx = RequestContext(request_id=f"req_{i}", front_door="openai", endpoint="chat", config_version="v")
        ctx.principal = Principal(
            key_id=f"key_{rnd.randrange(200)}",
            name="k",
            role="user",
            user_id=f"user_{rnd.randrange(100)}",
            team_id=f"team_{rnd.randrange(10)}",
            org_id="org_1",
        )
        ctx.requested_model = model
        ctx.deployment = Deployment(provider=ptype, provider_type=ptype, model=model, base_url="http://x")
        ctx.usage = Usage(prompt_tokens=rnd.randrange(50, 4000), completion_tokens=rnd.randrange(1, 800))
        ctx.metadata = {"project": f"p{rnd.randrange(5)}"}
        out.append(ctx)
    return out


async def bench_writer(name: str, store: LedgerStore, n: int, spool: Path) -> None:
    ctxs = contexts(n)
    policy = LedgerPolicy(store, PriceBook(), spool, batch_size=500, flush_interval=0.2, max_queue=n + 1)
    t0 = time.perf_counter()
    for ctx in ctxs:
        policy.on_finalize(ctx)
    enqueue = time.perf_counter() - t0
    t1 = time.perf_counter()
    await policy.start()
    await policy.stop()
    drain = time.perf_counter() - t1
    assert policy.written == n and policy.spooled == 0, (policy.written, policy.spooled)
    print(
        f"{name:<10} writer: {n:,} rows drained in {drain:.2f} s = {n / drain:,.0f} rows/s; "
        f"on_finalize {enqueue / n * 1e6:.1f} us/row (pricing + row + enqueue)"
    )


def synthetic(n: int) -> list[LedgerRow]:
    rnd = random.Random(2)
    base = datetime(START.year, START.month, START.day, tzinfo=UTC).timestamp()
    span = DAYS * 86_400
    rows = []
    for i in range(n):
        model = rnd.choice(MODELS)
        rows.append(
            LedgerRow(
                id=f"lg_bench{i:012d}",
                request_id=f"req_{i}",
                ts=round(base + span * i / n, 6),  # time-ordered, as a real ledger is
                endpoint="chat",
                key_id=f"key_{rnd.randrange(1000)}",
                user_id=f"user_{rnd.randrange(300)}",
                team_id=f"team_{rnd.randrange(30)}",
                org_id=f"org_{rnd.randrange(5)}",
                requested_model=model,
                provider="openai",
                upstream_model=model,
                input_tokens=rnd.randrange(50, 4000),
                output_tokens=rnd.randrange(1, 800),
                cached_tokens=0,
                cost_nanos=rnd.randrange(10_000, 5_000_000),
                latency_ms=rnd.random() * 2000,
                status=200 if rnd.random() < 0.97 else 502,
            )
        )
    return rows


# Aggregates rebuilt from the ledger rows, every sum (state/ledger_sql.py's ROW_SUMS_SQL: cost, cache savings,
# latency sum and buckets): also how to rebuild them after a partial restore (docs/cost-and-ledger.md).
_AGG_SQL = (
    f"INSERT INTO spend_daily (dim, day, value, {', '.join(SUM_COLUMNS)}) "
    f"SELECT '{{dim}}', {{day}}, {{value}}, {', '.join(ROW_SUMS_SQL.values())} "
    "FROM ledger WHERE endpoint <> 'shadow' GROUP BY 2, 3"
)
_VALUES = {
    "all": "''",
    "key": "coalesce(key_id, '')",
    "user": "coalesce(user_id, '')",
    "team": "coalesce(team_id, '')",
    "org": "coalesce(org_id, '')",
    "model": "provider || '/' || upstream_model",
}


async def time_reports(name: str, store: LedgerStore, rounds: int = 5) -> None:
    since = START + timedelta(days=30)
    until = since + timedelta(days=29)
    for by in GROUP_BYS:
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            lines = await store.spend(by, since, until)
            samples.append(time.perf_counter() - t0)
        print(
            f"{name:<10} report by {by:<5} (30 days, {len(lines):>4} lines): {statistics.median(samples) * 1e3:8.2f} ms"
        )
    t0 = time.perf_counter()
    scan = await store.scan_totals(since, until)
    scan_s = time.perf_counter() - t0
    total = sum(line.cost_nanos for line in await store.spend("user", since, until))
    assert total == scan.cost_nanos, (total, scan.cost_nanos)
    print(f"{name:<10} full scan of the same 30 days ({scan.requests:,} rows): {scan_s * 1e3:8.1f} ms (totals agree)")


async def sqlite_bench(n_writer: int, n_report: int, tmp: Path) -> None:
    db = SQLiteDatabase(str(tmp / "writer.db"), LEDGER_MIGRATIONS)
    await bench_writer("sqlite", SQLiteLedgerStore(db), n_writer, tmp / "spool-sqlite.jsonl")
    db.close()

    db = SQLiteDatabase(str(tmp / "report.db"), LEDGER_MIGRATIONS)
    t0 = time.perf_counter()
    rows = synthetic(n_report)

    def load(c: sqlite3.Connection) -> None:
        c.execute("BEGIN")
        cols = ", ".join(COLUMNS)
        c.executemany(f"INSERT INTO ledger ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})", map(row_values, rows))
        for dim, value in _VALUES.items():
            c.execute(_AGG_SQL.format(dim=dim, day="date(ts, 'unixepoch')", value=value))
        c.execute("COMMIT")

    await db.run(load)
    print(f"sqlite     loaded {n_report:,} rows + aggregates in {time.perf_counter() - t0:.1f} s")
    await time_reports("sqlite", SQLiteLedgerStore(db))
    db.close()


async def postgres_bench(n_writer: int, n_report: int, tmp: Path) -> None:
    schema = f"tg_bench_{uuid.uuid4().hex[:12]}"
    db = PostgresDatabase(PG_URL, LEDGER_PG_MIGRATIONS, schema=schema)
    try:
        await bench_writer("postgresql", PostgresLedgerStore(db), n_writer, tmp / "spool-pg.jsonl")
        pool = await db.pool()
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE ledger, spend_daily")
        t0 = time.perf_counter()
        rows = synthetic(n_report)
        records = [
            (
                r.id,
                r.request_id,
                datetime.fromtimestamp(r.ts, UTC),
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
                r.cache_hit,
                r.stream,
                r.client_disconnected,
                r.usage_estimated,
                "{}",
                r.cost_saved_nanos,
            )
            for r in rows
        ]
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("ledger", records=records, schema_name=schema)
            for dim, value in _VALUES.items():
                await conn.execute(_AGG_SQL.format(dim=dim, day="(ts AT TIME ZONE 'UTC')::date", value=value))
            await conn.execute("ANALYZE ledger")
            await conn.execute("ANALYZE spend_daily")
        print(f"postgresql loaded {n_report:,} rows (COPY) + aggregates in {time.perf_counter() - t0:.1f} s")
        await time_reports("postgresql", PostgresLedgerStore(db))
    finally:
        await db.drop_schema()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writer-rows", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger size for the report test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollgate-bench-ledger-") as tmp:
        if not args.no_sqlite:
            await sqlite_bench(args.writer_rows, args.rows, Path(tmp))
        if not args.no_postgres:
            await postgres_bench(args.writer_rows, args.rows, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
