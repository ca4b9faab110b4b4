#!/usr/bin/env python3
"""Ledger writer cost per row: ``aggregate()`` (the per-caller sums) and ``write_batch`` into SQLite and PostgreSQL.

  PYTHONPATH=src python3 benchmarks/bench_ledger_rowcost.py [--rows 50000] [--no-postgres]
  PYTHONPATH=src python3 benchmarks/bench_ledger_rowcost.py --backfill-rows 1000000   # migration ledger_0003

Rows come in batches of 500 (the writer's default) from 200 keys (of 100 users in 10 teams) and 6 models
over one day, as a busy gateway's writer sees them. Microseconds per row over ``--rounds`` runs: the least CPU
time for ``aggregate()``; wall time for ``write_batch`` (aggregates and database included), median and
least. On a shared machine the least is the steadiest; compare runs made side by side.

``--backfill-rows N``: a database at ``ledger_0002`` holding N rows over 90 days (and their aggregates),
then the time ``ledger_0003`` takes to add its columns and backfill cache hits and latency from the rows.
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
from datetime import date
from pathlib import Path

from tollgate.state.ledger import LedgerRow, LedgerStore, aggregate
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.ledger_sqlite import LEDGER_MIGRATIONS, SQLiteLedgerStore
from tollgate.state.migrations import pg_apply, sqlite_apply
from tollgate.state.postgres import PostgresDatabase
from tollgate.state.sqlite import SQLiteDatabase

PG_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODELS = ("gpt-4o-mini", "gpt-4.1", "gpt-5.4-mini", "o4-mini", "claude-haiku-4-5", "claude-sonnet-4-6")
BATCH = 500
DAY0 = 1_780_000_000.0


def rows(n: int, tag: str) -> list[LedgerRow]:
    rnd = random.Random(3)
    out = []
    for i in range(n):
        model = rnd.choice(MODELS)
        key = rnd.randrange(200)  # a key belongs to one user, a user to one team
        out.append(
            LedgerRow(
                id=f"lg_{tag}{i:012d}",
                request_id=f"req_{i}",
                ts=DAY0 + 80_000 * i / n,
                endpoint="chat",
                key_id=f"key_{key}",
                user_id=f"user_{key % 100}",
                team_id=f"team_{key % 10}",
                org_id="org_1",
                requested_model=model,
                provider="openai",
                upstream_model=model,
                input_tokens=rnd.randrange(50, 4000),
                output_tokens=rnd.randrange(1, 800),
                cost_nanos=rnd.randrange(10_000, 5_000_000),
                latency_ms=rnd.lognormvariate(6, 1),
                status=200 if rnd.random() < 0.97 else 502,
            )
        )
    return out


def bench_aggregate(n: int, rounds: int) -> float:
    data = rows(n, "agg")
    samples = []
    for _ in range(rounds):
        t0 = time.process_time()  # CPU time: pure Python, so other processes on the machine matter less
        for i in range(0, n, BATCH):
            aggregate(data[i : i + BATCH])
        samples.append((time.process_time() - t0) / n * 1e6)
    return min(samples)


async def bench_store(store: LedgerStore, n: int, round_no: int) -> float:
    data = rows(n, f"r{round_no}_")
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        await store.write_batch(data[i : i + BATCH])
    return (time.perf_counter() - t0) / n * 1e6


_OLD_COLUMNS = (
    "id, request_id, ts, endpoint, key_id, user_id, team_id, org_id, requested_model, provider, upstream_model, "
    "input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, status, error_type, cache_hit, stream, "
    "client_disconnected, usage_estimated, tags"
)
_OLD_SUMS = "requests, errors, input_tokens, output_tokens, cached_tokens, cost_nanos"


def old_rows(n: int) -> list[LedgerRow]:
    rnd = random.Random(4)
    out = rows(n, "bf")
    for i, r in enumerate(out):
        r.ts = DAY0 - 90 * 86_400 + 90 * 86_400 * i / n  # 90 days, time-ordered
        r.cache_hit = rnd.random() < 0.1
    return out


def old_values(r: LedgerRow, ts: object) -> tuple[object, ...]:
    return (
        r.id, r.request_id, ts, r.endpoint, r.key_id, r.user_id, r.team_id, r.org_id, r.requested_model, r.provider,
        r.upstream_model, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_nanos, r.latency_ms, r.status,
        r.error_type, r.cache_hit, r.stream, r.client_disconnected, r.usage_estimated, "{}",
    )  # fmt: skip


def old_aggregates(data: list[LedgerRow]) -> list[tuple[object, ...]]:
    return [(*key, *sums[:6]) for key, sums in aggregate(data)]


def backfill_sqlite(n: int, tmp: Path) -> None:
    path = str(tmp / "backfill.db")
    data = old_rows(n)
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_apply(conn, LEDGER_MIGRATIONS[:2])
    conn.execute("BEGIN")
    conn.executemany(
        f"INSERT INTO ledger ({_OLD_COLUMNS}) VALUES ({', '.join('?' * 23)})", (old_values(r, r.ts) for r in data)
    )
    upsert = (
        f"INSERT INTO spend_daily (dim, day, value, {_OLD_SUMS}) VALUES ({', '.join('?' * 9)}) "
        "ON CONFLICT (dim, day, value) DO UPDATE SET requests = requests + excluded.requests"
    )
    for i in range(0, n, 10_000):
        conn.executemany(upsert, old_aggregates(data[i : i + 10_000]))
    conn.execute("COMMIT")
    aggregates = conn.execute("SELECT count(*) FROM spend_daily").fetchone()[0]
    t0 = time.perf_counter()
    sqlite_apply(conn, LEDGER_MIGRATIONS)
    took = time.perf_counter() - t0
    conn.close()
    print(f"sqlite   ledger_0003 on {n:,} rows ({aggregates:,} aggregate rows): {took:.1f} s")


async def backfill_postgres(n: int) -> None:
    schema = f"tg_backfill_{uuid.uuid4().hex[:12]}"
    pg = PostgresDatabase(PG_URL, LEDGER_PG_MIGRATIONS[:2], schema=schema)
    try:
        pool = await pg.pool()
        data = old_rows(n)
        from datetime import UTC, datetime

        async with pool.acquire() as conn:
            records = [old_values(r, datetime.fromtimestamp(r.ts, UTC)) for r in data]
            await conn.copy_records_to_table(
                "ledger", records=records, schema_name=schema, columns=_OLD_COLUMNS.split(", ")
            )
            sums: dict[tuple[str, str, str], int] = {}
            for i in range(0, n, 10_000):
                for key, v in aggregate(data[i : i + 10_000]):
                    sums[key] = sums.get(key, 0) + v[0]
            await conn.copy_records_to_table(
                "spend_daily", schema_name=schema, columns=["dim", "day", "value", "requests", "errors", "input_tokens",
                "output_tokens", "cached_tokens", "cost_nanos"],
                records=[(d, date.fromisoformat(day), v, c, 0, 0, 0, 0, 0) for (d, day, v), c in sums.items()],
            )  # fmt: skip
            await conn.execute("ANALYZE")
            t0 = time.perf_counter()
            await pg_apply(conn, LEDGER_PG_MIGRATIONS)
            took = time.perf_counter() - t0
        print(f"postgres ledger_0003 on {n:,} rows ({len(sums):,} aggregate rows): {took:.1f} s")
    finally:
        await pg.drop_schema()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--backfill-rows", type=int, default=0, help="time migration ledger_0003 on this many rows")
    args = parser.parse_args()
    if args.backfill_rows:
        with tempfile.TemporaryDirectory(prefix="tollgate-backfill-") as tmp:
            backfill_sqlite(args.backfill_rows, Path(tmp))
        if not args.no_postgres:
            await backfill_postgres(args.backfill_rows)
        return 0
    print(f"aggregate()          {bench_aggregate(args.rows, args.rounds):7.2f} us/row CPU, min")
    with tempfile.TemporaryDirectory(prefix="tollgate-rowcost-") as tmp:
        db = SQLiteDatabase(str(Path(tmp) / "ledger.db"), LEDGER_MIGRATIONS)
        samples = [await bench_store(SQLiteLedgerStore(db), args.rows, r) for r in range(args.rounds)]
        db.close()
        print(f"sqlite write_batch   {statistics.median(samples):7.2f} us/row median, {min(samples):7.2f} min")
    if not args.no_postgres:
        pg = PostgresDatabase(PG_URL, LEDGER_PG_MIGRATIONS, schema=f"tg_rowcost_{uuid.uuid4().hex[:12]}")
        try:
            samples = [await bench_store(PostgresLedgerStore(pg), args.rows, r) for r in range(args.rounds)]
        finally:
            await pg.drop_schema()
        print(f"postgres write_batch {statistics.median(samples):7.2f} us/row median, {min(samples):7.2f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
