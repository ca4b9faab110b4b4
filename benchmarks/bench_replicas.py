#!/usr/bin/env python3
"""Throughput of 1, 2 and 3 `tollgate serve` replicas on one Redis and one PostgreSQL, and the cost of the shared
state per request.

  PYTHONPATH=src python3 benchmarks/bench_replicas.py                       # 10 s per point, 3 repeats
  PYTHONPATH=src python3 benchmarks/bench_replicas.py --duration 5 --repeats 1 --concurrency 32 --via-lb

Needs the local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, trust auth; TOLLGATE_TEST_REDIS_URL and
TOLLGATE_TEST_POSTGRES_URL override them). It creates a PostgreSQL database and a Redis key prefix of its own,
starts three replicas once (the helpers of tests/e2e/cluster.py), creates an org, a team, a user and one key
with a rate limit (rpm) and a USD budget through the admin API, so every request goes through the full
governance path: auth (cached), allow-list, the rate limit and the budget reservation in one Lua script on Redis,
the settlement (a second script: the worst case reserved is refunded down to the real cost), the ledger row to
PostgreSQL. The upstream is the built-in demo provider (no network), priced per token ($100/$200 per million,
so that the worst case and the real cost differ by whole micro-dollars and every request is settled).

For each point (n = 1, 2, 3) the load generator (aiohttp, in this process) keeps ``--concurrency`` requests in
flight for ``--duration`` seconds, round-robin over the first n replicas directly (default), or through the
test load balancer of tests/e2e/lb.py (``--via-lb``; it is Python too and costs CPU of its own). Idle replicas
are left running. It reports per point, as the median of ``--repeats`` runs:

- req/s: answered requests (all 200) per second;
- Redis round trips per request: the delta of ``INFO commandstats`` over the run, less INFO itself and the
  commands the counter scripts run inside Redis (which commandstats counts too), divided by the requests:
  the commands clients sent (EVALSHA for the counter scripts; GET/SET for the cache, PUBLISH for
  invalidations when they happen). Also the total of commands Redis ran, inner ones included. The Redis server
  is shared with whatever else runs on the machine, so both are upper bounds. Counted until the replicas'
  background settlements have all reached Redis (EVALSHA calls stable for 1 s), and the share of them that
  was still queued when the load stopped is reported with how long it took to drain;
- PostgreSQL ledger rows and transactions per request: rows counted in ``ledger``, and
  ``pg_stat_database.xact_commit`` of the benchmark's own database (each ledger batch is one transaction;
  the replicas' key lookups are cached, so little else commits), read once the statistics have caught up.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.cluster import (
    REDIS_URL,
    Replica,
    all_ready,
    create_database,
    delete_redis_prefix,
    drop_database,
    postgres_problem,
    redis_problem,
    start_replica,
    stop_replicas,
)
from tests.e2e.lb import LoadBalancer

MASTER = "tg-master-bench-replicas"
# Commands the counter scripts run inside Redis (INFO commandstats counts them too); every other command was
# sent by a client, one round trip each (EVALSHA for the counter scripts, GET/SET for the cache, PUBLISH, ...).
SCRIPT_INNER = {
    "time", "zrangebyscore", "zrange", "zadd", "zrem", "zscore", "hmget", "hget", "hset", "hdel", "hincrby",
    "pexpire", "pttl",
}  # fmt: skip
MODEL = "demo/tollgate-demo"


@dataclass
class Point:
    replicas: int
    requests: int
    errors: int
    seconds: float
    redis_commands: int  # every command Redis executed, the scripts' inner ones included
    redis_round_trips: int  # commands clients sent
    redis_by_command: dict[str, int]
    ledger_rows: int
    pg_commits: int
    late_scripts: int  # EVALSHA calls after the load stopped: settlements still queued when it ended
    drain_seconds: float  # how long they took to reach Redis

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def per_request(self, n: int) -> float:
        return n / self.requests if self.requests else float("nan")


def redis_calls() -> dict[str, int]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items() if isinstance(v, dict)}


async def pg_counters(database_url: str, database: str) -> tuple[int, int, int]:
    """(rows in ``ledger``, rows inserted into it and transactions committed in ``database`` as the statistics
    views say: they lag, since backends report them when idle, up to seconds later)."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM ledger")
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        inserted = await conn.fetchval("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'ledger'")
        commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
    finally:
        await conn.close()
    return int(rows or 0), int(inserted or 0), int(commits or 0)


async def pg_settled(database_url: str, database: str, before: tuple[int, int, int]) -> tuple[int, int]:
    """(ledger rows written, transactions committed) since ``before``, once the statistics views have caught up
    with the table (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        rows, inserted, commits = await pg_counters(database_url, database)
        if inserted - before[1] >= rows - before[0] or time.monotonic() > deadline:
            return rows - before[0], commits - before[2]
        await asyncio.sleep(0.5)


async def setup_key(base: str) -> str:
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for path, body in (
            ("/admin/orgs", {"id": "bench-org", "name": "Bench"}),
            ("/admin/teams", {"id": "bench-team", "org_id": "bench-org", "name": "T"}),
            ("/admin/users", {"id": "bench-user", "team_id": "bench-team"}),
            (
                "/admin/keys",
                {
                    "name": "bench",
                    "user_id": "bench-user",
                    "limits": {"rpm": 10_000_000},
                    "budget": {"limit_usd": 1_000_000, "period": "total"},
                },
            ),
        ):
            async with s.post(base + path, json=body) as resp:
                answer = await resp.json()
                if resp.status not in (200, 201):
                    raise SystemExit(f"{path}: {resp.status} {answer}")
    return str(answer["key"])


async def load(targets: list[str], key: str, concurrency: int, duration: float) -> tuple[int, int, float]:
    """(answered 200, other answers, seconds) of a closed loop of ``concurrency`` clients, round-robin."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}
    headers = {"Authorization": f"Bearer {key}"}
    turn = itertools.cycle(targets)
    ok = bad = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.monotonic()
        end = start + duration

        async def client() -> None:
            nonlocal ok, bad
            while time.monotonic() < end:
                async with session.post(next(turn) + "/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        bad += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return ok, bad, time.monotonic() - start


async def measure(
    replicas: list[Replica], n: int, key: str, args: argparse.Namespace, database_url: str, database: str
) -> Point:
    lb: LoadBalancer | None = None
    targets = [r.base for r in replicas[:n]]
    if args.via_lb:
        lb = LoadBalancer.of(targets)
        await lb.start()
        targets = [lb.base]
    try:
        await load(targets, key, args.concurrency, 1.0)  # warm up: connections, key caches, script cache
        await asyncio.sleep(0.5)
        pg0 = await pg_counters(database_url, database)
        calls0 = redis_calls()
        ok, bad, seconds = await load(targets, key, args.concurrency, args.duration)
        calls_at_end = redis_calls()
        drained, calls1 = await settle_down()
        rows, commits = await pg_settled(database_url, database, pg0)
    finally:
        if lb is not None:
            await lb.stop()
    delta = {c: calls1.get(c, 0) - calls0.get(c, 0) for c in calls1 if c != "info"}
    delta = {c: d for c, d in delta.items() if d > 0}
    # The warm-up's rows may land in the window; the rows of this run may not all be counted yet: both small.
    trips = sum(d for c, d in delta.items() if c not in SCRIPT_INNER)
    late = sum(calls1.get(c, 0) - calls_at_end.get(c, 0) for c in ("evalsha", "eval"))
    return Point(n, ok, bad, seconds, sum(delta.values()), trips, delta, rows, commits, late, drained)


async def settle_down() -> tuple[float, dict[str, int]]:
    """Wait until the replicas' background settlements stop reaching Redis (EVALSHA calls stable for 1 s, at
    most 60 s): (seconds it took, the command counts then). Also lets the ledger writers flush (every 0.2 s)
    and the statistics views catch up."""
    start = time.monotonic()
    last = redis_calls()
    stable_since = start
    while time.monotonic() - start < 60:
        await asyncio.sleep(0.5)
        now = redis_calls()
        if now.get("evalsha", 0) != last.get("evalsha", 0):
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            break
        last = now
    return stable_since - start, last


def table(results: dict[int, list[Point]]) -> str:
    lines = [
        "| replicas | req/s (median) | runs | Redis round trips / request | sent / request "
        "| commands Redis ran / request | ledger rows / request | PostgreSQL commits / request "
        "| settlements still queued at the end (per request, drain time) |",
        "|---:|---:|---|---:|---|---:|---:|---:|---|",
    ]
    for n, points in results.items():
        mid = sorted(points, key=lambda p: p.rps)[len(points) // 2]
        runs = ", ".join(f"{p.rps:,.0f}" for p in points)
        sent = [(c, d) for c, d in mid.redis_by_command.items() if c not in SCRIPT_INNER]
        top = sorted(sent, key=lambda kv: -kv[1])[:3]
        tops = ", ".join(f"{c} {mid.per_request(d):.2f}" for c, d in top)
        trips = statistics.median(p.per_request(p.redis_round_trips) for p in points)
        cmds = statistics.median(p.per_request(p.redis_commands) for p in points)
        rows = statistics.median(p.per_request(p.ledger_rows) for p in points)
        commits = statistics.median(p.per_request(p.pg_commits) for p in points)
        errors = sum(p.errors for p in points)
        note = f" ({errors} non-200)" if errors else ""
        lines.append(
            f"| {n} | {mid.rps:,.0f}{note} | {runs} | {trips:.2f} | {tops} | {cmds:.2f} | {rows:.3f} | {commits:.4f} "
            f"| {mid.per_request(mid.late_scripts):.2f} ({mid.drain_seconds:.1f} s) |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per point; the median is reported (default 3)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    ap.add_argument("--replicas", default="1,2,3", help="points to measure (default 1,2,3)")
    ap.add_argument("--via-lb", action="store_true", help="go through tests/e2e/lb.py instead of round-robin")
    args = ap.parse_args()
    points = [int(x) for x in args.replicas.split(",")]
    # SIGTERM (and SIGINT, which background jobs ignore) end the run through the cleanup below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    problems = [p for p in (asyncio.run(postgres_problem()), redis_problem()) if p]
    if problems:
        raise SystemExit("; ".join(problems))

    run = uuid.uuid4().hex[:12]
    database = f"tollgate_bench_{run}"
    prefix = f"tollgate:bench:{run}:"
    database_url = create_database(database)
    replicas: list[Replica] = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        folder = Path(tmp)
        config = folder / "tollgate.yaml"
        config.write_text(
            f"""
storage:
  database_url: {database_url}
rate_limits:
  counter_url: {REDIS_URL}
  key_prefix: "{prefix}rl:"
cache:
  key_prefix: "{prefix}cache:"
pricing:
  models:
    tollgate-demo: {{input: 100.0, output: 200.0}}
""",
            encoding="utf-8",
        )
        try:
            for i in range(max(points)):
                (folder / f"r{i}").mkdir()
                replicas.append(start_replica(f"r{i}", config, folder / f"r{i}", MASTER))
            asyncio.run(all_ready(replicas))
            key = asyncio.run(setup_key(replicas[0].base))
            results: dict[int, list[Point]] = {n: [] for n in points}
            for _ in range(args.repeats):
                for n in points:
                    p = asyncio.run(measure(replicas, n, key, args, database_url, database))
                    results[n].append(p)
                    print(
                        f"  {n} replica(s): {p.rps:,.0f} req/s, "
                        f"{p.per_request(p.redis_round_trips):.2f} Redis trips/req, "
                        f"{p.per_request(p.ledger_rows):.3f} ledger rows/req, "
                        f"{p.per_request(p.pg_commits):.4f} commits/req, "
                        f"{p.per_request(p.late_scripts):.2f} scripts/req after the end ({p.drain_seconds:.1f} s)",
                        file=sys.stderr,
                    )
            how = "through tests/e2e/lb.py" if args.via_lb else "round-robin by the load generator"
            print(
                f"\n{args.duration:g} s per run, {args.repeats} run(s), concurrency {args.concurrency}, {how}; "
                "demo provider, key with rpm + USD budget, ledger to PostgreSQL\n"
            )
            print(table(results))
        finally:
            stop_replicas(replicas)
            drop_database(database)
            delete_redis_prefix(prefix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
