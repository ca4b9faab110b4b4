#!/usr/bin/env python3
"""Ledger writer cost per row: ``aggregate()`` (the per-caller sums) and ``write_batch`` into SQLite and PostgreSQL.

  PYTHONPATH=src python3 benchmarks/bench_ledger_rowcost.py [--rows 50000] [--no-postgres]

Rows come in batches of 500 (the writer's default) from 200 keys (of 100 users in 10 teams) and 6 models
over one day, as a busy gateway's writer sees them; each figure is the median of ``--rounds`` runs, in
microseconds per row (CPU time for ``aggregate()``, wall time for ``write_batch``, database included) on
whatever this machine is doing, so compare runs made side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tollgate.state.ledger import LedgerRow, LedgerStore, aggregate
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.ledger_sqlite import LEDGER_MIGRATIONS, SQLiteLedgerStore
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
    return statistics.median(samples)


async def bench_store(store: LedgerStore, n: int, round_no: int) -> float:
    data = rows(n, f"r{round_no}_")
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        await store.write_batch(data[i : i + BATCH])
    return (time.perf_counter() - t0) / n * 1e6


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"aggregate()          {bench_aggregate(args.rows, args.rounds):7.2f} us/row")
    with tempfile.TemporaryDirectory(prefix="tollgate-rowcost-") as tmp:
        db = SQLiteDatabase(str(Path(tmp) / "ledger.db"), LEDGER_MIGRATIONS)
        samples = [await bench_store(SQLiteLedgerStore(db), args.rows, r) for r in range(args.rounds)]
        db.close()
        print(f"sqlite write_batch   {statistics.median(samples):7.2f} us/row (aggregates included)")
    if not args.no_postgres:
        pg = PostgresDatabase(PG_URL, LEDGER_PG_MIGRATIONS, schema=f"tg_rowcost_{uuid.uuid4().hex[:12]}")
        try:
            samples = [await bench_store(PostgresLedgerStore(pg), args.rows, r) for r in range(args.rounds)]
        finally:
            await pg.drop_schema()
        print(f"postgres write_batch {statistics.median(samples):7.2f} us/row (aggregates included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
