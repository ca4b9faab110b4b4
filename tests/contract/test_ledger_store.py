"""The ``LedgerStore`` contract, against memory, SQLite and the real PostgreSQL alike."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.postgres import new_schema, require_postgres
from tollgate.state.ledger import (
    GROUP_BYS,
    SHADOW_ENDPOINT,
    TEAM_GROUP_BYS,
    LedgerRow,
    LedgerStore,
    SpendLine,
    aggregate,
)
from tollgate.state.ledger_memory import MemoryLedgerStore
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.ledger_sqlite import LEDGER_MIGRATIONS, SQLiteLedgerStore
from tollgate.state.postgres import PostgresDatabase
from tollgate.state.sqlite import SQLiteDatabase

DAY1 = date(2026, 3, 1)
DAY2 = date(2026, 3, 2)
DAY3 = date(2026, 3, 3)


def at(day: date, hour: int = 12, minute: int = 0, second: float = 0.0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp() + second


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return require_postgres()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    if request.param == "memory":
        yield MemoryLedgerStore()
    elif request.param == "sqlite":
        db = SQLiteDatabase(str(tmp_path / "ledger.db"), LEDGER_MIGRATIONS)
        yield SQLiteLedgerStore(db)
        db.close()
    else:
        url: str = request.getfixturevalue("postgres_url")
        pg = PostgresDatabase(url, LEDGER_PG_MIGRATIONS, schema=new_schema())
        try:
            yield PostgresLedgerStore(pg)
        finally:
            await pg.drop_schema()


_ids = iter(range(1, 10**9))


def row(
    ts: float,
    *,
    cost: int = 1_500,
    key: str | None = "key_a",
    user: str | None = "alice",
    team: str | None = "red",
    org: str | None = "acme",
    model: str = "gpt-4o-mini",
    status: int = 200,
    request_id: str | None = None,
    row_id: str | None = None,
    tokens: tuple[int, int, int] = (10, 5, 2),
    latency: float = 12.5,
    saved: int | None = None,
) -> LedgerRow:
    """A row; with ``saved``, a cache hit: cost 0 and that much saved."""
    n = next(_ids)
    return LedgerRow(
        id=row_id or f"lg_test{n:08d}",
        request_id=request_id or f"req_{n}",
        ts=ts,
        endpoint="chat",
        key_id=key,
        user_id=user,
        team_id=team,
        org_id=org,
        requested_model=model,
        provider="openai",
        upstream_model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cached_tokens=tokens[2],
        cost_nanos=cost if saved is None else 0,
        latency_ms=latency,
        status=status,
        error_type="upstream_error" if status >= 400 else None,
        cache_hit=saved is not None,
        cost_saved_nanos=saved or 0,
    )


# The ledger row columns and aggregate sums of schema versions before ledger_0003.
_OLD_COLUMNS = (
    "id, request_id, ts, endpoint, key_id, user_id, team_id, org_id, requested_model, provider, upstream_model, "
    "input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, status, error_type, cache_hit, stream, "
    "client_disconnected, usage_estimated, tags"
)
_OLD_SUMS = "requests, errors, input_tokens, output_tokens, cached_tokens, cost_nanos"


def _old_values(r: LedgerRow, ts: object) -> tuple[object, ...]:
    return (
        r.id, r.request_id, ts, r.endpoint, r.key_id, r.user_id, r.team_id, r.org_id, r.requested_model, r.provider,
        r.upstream_model, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_nanos, r.latency_ms, r.status,
        r.error_type, r.cache_hit, r.stream, r.client_disconnected, r.usage_estimated, "{}",
    )  # fmt: skip


def _old_aggregates(rows: list[LedgerRow]) -> list[tuple[str, str, str, int, int, int, int, int, int]]:
    return [(*key, *sums[:6]) for key, sums in aggregate(rows)]


def write_old_sqlite(db: SQLiteDatabase, rows: list[LedgerRow]) -> Awaitable[None]:
    """As a writer of a version before ledger_0003 stored ``rows``: its columns, its aggregates."""

    def tx(c: sqlite3.Connection) -> None:
        c.execute("BEGIN")
        c.executemany(f"INSERT INTO ledger ({_OLD_COLUMNS}) VALUES ({', '.join('?' * 23)})",
                      [_old_values(r, r.ts) for r in rows])  # fmt: skip
        c.executemany(f"INSERT INTO spend_daily (dim, day, value, {_OLD_SUMS}) VALUES ({', '.join('?' * 9)})",
                      _old_aggregates(rows))  # fmt: skip
        c.execute("COMMIT")

    return db.run(tx)


async def write_old_postgres(pg: PostgresDatabase, rows: list[LedgerRow]) -> None:
    pool = await pg.pool()
    async with pool.acquire() as conn, conn.transaction():
        marks = ", ".join(f"${i}" for i in range(1, 24))
        await conn.executemany(
            f"INSERT INTO ledger ({_OLD_COLUMNS}) VALUES ({marks})",
            [_old_values(r, datetime.fromtimestamp(r.ts, UTC)) for r in rows],
        )
        await conn.executemany(
            f"INSERT INTO spend_daily (dim, day, value, {_OLD_SUMS}) VALUES ($1, $2::text::date, $3, $4, $5, $6, $7, "
            "$8, $9)",
            _old_aggregates(rows),
        )


def total(lines: list[SpendLine]) -> SpendLine:
    out = SpendLine("total")
    for line in lines:
        out.add(line)
    return out


async def test_write_returns_new_rows_and_a_replayed_batch_adds_nothing(ledger: LedgerStore) -> None:
    batch = [row(at(DAY1)), row(at(DAY1)), row(at(DAY2))]
    assert await ledger.write_batch(batch) == 3
    assert await ledger.write_batch(batch) == 0  # a retried / replayed batch
    assert await ledger.write_batch([*batch, row(at(DAY2))]) == 1  # only the new row counts
    scan = await ledger.scan_totals(DAY1, DAY2)
    assert scan.requests == 4
    by_day = await ledger.spend("day", DAY1, DAY2)
    assert [(line.group, line.requests) for line in by_day] == [("2026-03-01", 2), ("2026-03-02", 2)]


async def test_a_repeated_id_inside_one_batch_counts_once(ledger: LedgerStore) -> None:
    first = row(at(DAY1), row_id="lg_dup", cost=7)
    again = row(at(DAY1), row_id="lg_dup", cost=7)
    assert await ledger.write_batch([first, again]) == 1
    assert (await ledger.scan_totals(DAY1, DAY1)).cost_nanos == 7
    assert total(await ledger.spend("user", DAY1, DAY1)).cost_nanos == 7


async def test_every_grouping_adds_up_exactly_to_the_ledger(ledger: LedgerStore) -> None:
    rnd = random.Random(7)
    rows = [
        row(
            at(rnd.choice((DAY1, DAY2, DAY3)), rnd.randrange(24), rnd.randrange(60)),
            cost=rnd.randrange(0, 10**10),  # up to $10 a request, odd nano-dollars
            key=rnd.choice(("k1", "k2", "k3", None)),
            user=rnd.choice(("alice", "bob", None)),
            team=rnd.choice(("red", "blue", None)),
            org=rnd.choice(("acme", None)),
            model=rnd.choice(("gpt-4o-mini", "gpt-4.1", "claude-haiku-4-5")),
            status=rnd.choice((200, 200, 200, 429, 502)),
            tokens=(rnd.randrange(5000), rnd.randrange(5000), rnd.randrange(100)),
            # Microseconds, as the ledger policy rounds them; some right on a bucket bound.
            latency=rnd.choice((round(rnd.lognormvariate(6.5, 1.5), 3), 50.0, 1000.0, 60000.0, 60000.001)),
            saved=rnd.choice((None, None, None, rnd.randrange(1, 10**8))),
        )
        for _ in range(600)
    ]
    for i in range(0, len(rows), 97):  # uneven batches
        await ledger.write_batch(rows[i : i + 97])
    scan = await ledger.scan_totals(DAY1, DAY3)
    assert scan.requests == 600
    assert scan.cost_nanos == sum(r.cost_nanos for r in rows)
    assert scan.errors == sum(1 for r in rows if r.status >= 400)
    assert scan.cache_hits == sum(r.cache_hit for r in rows)
    assert scan.cost_saved_nanos == sum(r.cost_saved_nanos for r in rows) > 0
    assert scan.latency_us_sum == sum(round(r.latency_ms * 1000) for r in rows)
    expected_buckets = [0] * len(scan.latency_buckets)
    for r in rows:
        bounds = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
        expected_buckets[next((i for i, b in enumerate(bounds) if r.latency_ms <= b), len(bounds))] += 1
    assert scan.latency_buckets == expected_buckets
    for by in GROUP_BYS:
        lines = await ledger.spend(by, DAY1, DAY3)
        assert total(lines).values() == scan.values(), by  # every sum: money, hits, savings, latency
    by_user = {line.group: line.cost_nanos for line in await ledger.spend("user", DAY1, DAY3)}
    assert by_user == {
        u or "": sum(r.cost_nanos for r in rows if (r.user_id or "") == (u or "")) for u in ("alice", "bob", None)
    }
    by_model = {line.group for line in await ledger.spend("model", DAY1, DAY3)}
    assert by_model == {"openai/gpt-4o-mini", "openai/gpt-4.1", "openai/claude-haiku-4-5"}


async def test_a_team_report_adds_up_to_that_teams_rows_exactly(ledger: LedgerStore) -> None:
    rnd = random.Random(11)
    rows = [
        row(
            at(rnd.choice((DAY1, DAY2)), rnd.randrange(24)),
            cost=rnd.randrange(0, 10**9),
            key=rnd.choice(("k1", "k2", None)),
            user=rnd.choice(("alice", "bob", None)),
            team=rnd.choice(("red", "blue", None)),
            model=rnd.choice(("gpt-4o-mini", "gpt-4.1")),
            status=rnd.choice((200, 200, 500)),
        )
        for _ in range(300)
    ]
    await ledger.write_batch(rows)
    for team in ("red", "blue"):
        mine = [r for r in rows if r.team_id == team]
        for by in TEAM_GROUP_BYS:
            t = total(await ledger.spend(by, DAY1, DAY2, team))
            assert (t.requests, t.errors, t.cost_nanos) == (
                len(mine),
                sum(1 for r in mine if r.status >= 400),
                sum(r.cost_nanos for r in mine),
            ), (team, by)
        by_user = {line.group: line.cost_nanos for line in await ledger.spend("user", DAY1, DAY2, team)}
        expected: dict[str, int] = {}
        for r in mine:
            expected[r.user_id or ""] = expected.get(r.user_id or "", 0) + r.cost_nanos
        assert by_user == expected
    assert await ledger.spend("user", DAY1, DAY2, "nobody") == []
    with pytest.raises(ValueError, match="within one team"):
        await ledger.spend("org", DAY1, DAY2, "red")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_upgrading_backfills_the_team_aggregates_of_rows_stored_before(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rows = [
        row(at(DAY1, 23, 59, 59.5), team="red", user="alice", cost=100),
        row(at(DAY2, 0, 0, 0.25), team="red", user="bob", cost=200, key=None, status=500),
        row(at(DAY2), team="red", user=None, cost=300, model="gpt-4.1"),
        row(at(DAY2), team="blue", user="carol", cost=400),
        row(at(DAY2), team=None, user="dave", cost=500),
    ]
    rows[2] = replace(rows[2], provider=None, upstream_model=None)  # a failure before any provider answered
    clear_team_dims = "DELETE FROM spend_daily WHERE dim LIKE '%@team:%'"
    if backend == "sqlite":
        path = str(tmp_path / "ledger.db")
        old = SQLiteDatabase(path, LEDGER_MIGRATIONS[:1])
        await write_old_sqlite(old, rows)
        await old.run(lambda c: c.execute(clear_team_dims))  # as a version without team aggregates left it
        old.close()
        db = SQLiteDatabase(path, LEDGER_MIGRATIONS)
        store: LedgerStore = SQLiteLedgerStore(db)
    else:
        url: str = request.getfixturevalue("postgres_url")
        schema = new_schema()
        pg_old = PostgresDatabase(url, LEDGER_PG_MIGRATIONS[:1], schema=schema)
        await write_old_postgres(pg_old, rows)
        await (await pg_old.pool()).execute(clear_team_dims)
        await pg_old.close()
        pg = PostgresDatabase(url, LEDGER_PG_MIGRATIONS, schema=schema)
        store = PostgresLedgerStore(pg)
    try:
        assert await store.spend("user", DAY1, DAY2) != []  # the old aggregates are still there
        reds = [r for r in rows if r.team_id == "red"]
        expected: dict[str, dict[str, int]] = {"user": {}, "key": {}, "model": {}, "day": {}}
        for r in reds:
            for by, value in (
                ("user", r.user_id or ""),
                ("key", r.key_id or ""),
                ("model", r.model_label()),
                ("day", r.day.isoformat()),
            ):
                expected[by][value] = expected[by].get(value, 0) + r.cost_nanos
        for by in TEAM_GROUP_BYS:
            lines = await store.spend(by, DAY1, DAY2, "red")
            assert {line.group: line.cost_nanos for line in lines} == expected[by], by
        errors = total(await store.spend("day", DAY1, DAY2, "red")).errors
        assert errors == 1
        # From now on the writer keeps them: a new row lands in the backfilled aggregates.
        await store.write_batch([row(at(DAY2), team="red", user="alice", cost=7)])
        by_user = {line.group: line.cost_nanos for line in await store.spend("user", DAY1, DAY2, "red")}
        assert by_user["alice"] == 107
    finally:
        if backend == "sqlite":
            db.close()
        else:
            await pg.drop_schema()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_upgrading_backfills_latency_and_cache_hits_of_rows_stored_before(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rnd = random.Random(5)
    rows = [
        row(
            at(rnd.choice((DAY1, DAY2)), rnd.randrange(24), rnd.randrange(60)),
            cost=rnd.randrange(1, 10**7),
            key=rnd.choice(("k1", "k2", None)),
            user=rnd.choice(("alice", "bob", None)),
            team=rnd.choice(("red", "blue", None)),
            org=rnd.choice(("acme", None)),
            model=rnd.choice(("gpt-4o-mini", "gpt-4.1")),
            status=rnd.choice((200, 200, 502)),
            latency=rnd.choice((round(rnd.lognormvariate(6.5, 1.5), 3), 50.0, 100.0, 75_000.0)),
        )
        for _ in range(300)
    ]
    for i in range(0, 300, 7):
        rows[i] = replace(rows[i], cache_hit=True, cost_nanos=0)  # hits of a version that recorded no saving
    rows[1] = replace(rows[1], endpoint=SHADOW_ENDPOINT, key_id=None, user_id=None, team_id=None, org_id=None)
    # What the new writer keeps for the same rows: the upgraded database must read exactly the same.
    reference = MemoryLedgerStore()
    await reference.write_batch(rows)
    if backend == "sqlite":
        path = str(tmp_path / "ledger.db")
        old = SQLiteDatabase(path, LEDGER_MIGRATIONS[:2])
        await write_old_sqlite(old, rows)
        old.close()
        db = SQLiteDatabase(path, LEDGER_MIGRATIONS)
        store: LedgerStore = SQLiteLedgerStore(db)
    else:
        url: str = request.getfixturevalue("postgres_url")
        schema = new_schema()
        pg_old = PostgresDatabase(url, LEDGER_PG_MIGRATIONS[:2], schema=schema)
        await write_old_postgres(pg_old, rows)
        await pg_old.close()
        pg = PostgresDatabase(url, LEDGER_PG_MIGRATIONS, schema=schema)
        store = PostgresLedgerStore(pg)
    try:
        for by in GROUP_BYS:
            got = [(line.group, line.values()) for line in await store.spend(by, DAY1, DAY2)]
            assert got == [(line.group, line.values()) for line in await reference.spend(by, DAY1, DAY2)], by
        for team in ("red", "blue"):
            for by in TEAM_GROUP_BYS:
                got = [(line.group, line.values()) for line in await store.spend(by, DAY1, DAY2, team)]
                want = [(line.group, line.values()) for line in await reference.spend(by, DAY1, DAY2, team)]
                assert got == want, (team, by)
        days = await store.spend("day", DAY1, DAY2)
        assert sum(d.cache_hits for d in days) == sum(r.cache_hit for r in rows if r.endpoint != SHADOW_ENDPOINT)
        assert all(d.latency_mean_ms for d in days) and sum(d.cost_saved_nanos for d in days) == 0
        assert (await store.scan_totals(DAY1, DAY2)).values() == (await reference.scan_totals(DAY1, DAY2)).values()
        # From now on the writer keeps them: a new hit lands in the backfilled aggregates.
        before = total(await store.spend("day", DAY2, DAY2))
        await store.write_batch([row(at(DAY2), latency=20.0, saved=900)])
        after = total(await store.spend("day", DAY2, DAY2))
        assert (after.cache_hits, after.cost_saved_nanos) == (before.cache_hits + 1, 900)
        assert after.latency_us_sum == before.latency_us_sum + 20_000
        assert after.latency_buckets[1] == before.latency_buckets[1] + 1  # 20 ms: in (10, 25]
    finally:
        if backend == "sqlite":
            db.close()
        else:
            await pg.drop_schema()


async def test_days_are_utc_and_both_ends_are_included(ledger: LedgerStore) -> None:
    await ledger.write_batch(
        [
            row(at(DAY1, 0, 0), cost=1),  # first instant of day 1
            row(at(DAY1, 23, 59, 59.999999), cost=10),  # last microsecond of day 1
            row(at(DAY2, 0, 0), cost=100),  # first instant of day 2
            row(at(DAY3, 23, 59, 59.5), cost=1000),
        ]
    )
    assert (await ledger.scan_totals(DAY1, DAY1)).cost_nanos == 11
    assert total(await ledger.spend("team", DAY1, DAY1)).cost_nanos == 11
    assert total(await ledger.spend("team", DAY2, DAY3)).cost_nanos == 1100
    assert (await ledger.scan_totals(DAY2, DAY3)).cost_nanos == 1100
    assert await ledger.spend("org", date(2026, 3, 4), date(2026, 3, 31)) == []


async def test_sorting_costliest_first_and_days_in_order(ledger: LedgerStore) -> None:
    await ledger.write_batch(
        [
            row(at(DAY2), user="small", cost=5),
            row(at(DAY1), user="big", cost=500),
            row(at(DAY3), user="mid", cost=50),
        ]
    )
    assert [line.group for line in await ledger.spend("user", DAY1, DAY3)] == ["big", "mid", "small"]
    assert [line.group for line in await ledger.spend("day", DAY1, DAY3)] == [
        "2026-03-01",
        "2026-03-02",
        "2026-03-03",
    ]


async def test_rows_round_trip_and_are_found_by_request_id(ledger: LedgerStore) -> None:
    original = LedgerRow(
        id="lg_roundtrip",
        request_id="req_shared",
        ts=at(DAY1, 8, 30, 0.123456),
        endpoint="messages",
        key_id="key_x",
        user_id=None,
        team_id="t",
        org_id=None,
        requested_model="fast",
        provider="anthropic",
        upstream_model="claude-haiku-4-5",
        input_tokens=1234,
        output_tokens=56,
        cached_tokens=1000,
        cost_nanos=1_514_000,
        latency_ms=321.5,
        status=499,
        error_type="client_disconnected",
        cache_hit=False,
        stream=True,
        client_disconnected=True,
        usage_estimated=True,
        tags={"project": "apollo", "env": "prod"},
        cost_saved_nanos=42_000,
    )
    reused = row(at(DAY1, 9), request_id="req_shared")  # a client may reuse a request id
    await ledger.write_batch([original, reused])
    found = await ledger.rows_for_request("req_shared")
    assert [r.id for r in found] == ["lg_roundtrip", reused.id]
    got = found[0]
    assert abs(got.ts - original.ts) < 1e-6  # PostgreSQL keeps microseconds
    assert replace(got, ts=original.ts) == original
    assert await ledger.rows_for_request("req_unknown") == []


async def test_concurrent_batches_lose_and_double_nothing(ledger: LedgerStore) -> None:
    batches = [[row(at(DAY1 if i % 2 else DAY2), cost=i * 1000 + j) for j in range(50)] for i in range(12)]
    # Each batch written twice at once, as two replicas replaying the same spool would.
    written = await asyncio.gather(*(ledger.write_batch(b) for b in batches + batches))
    assert sum(written) == 600
    expected = sum(r.cost_nanos for b in batches for r in b)
    assert (await ledger.scan_totals(DAY1, DAY2)).cost_nanos == expected
    assert total(await ledger.spend("key", DAY1, DAY2)).cost_nanos == expected
    assert total(await ledger.spend("day", DAY1, DAY2)).requests == 600


async def test_shadow_rows_are_stored_but_in_no_report_or_total(ledger: LedgerStore) -> None:
    # A shadow call's row (policies/shadow.py): found by its request id, never counted as spend.
    primary = row(at(DAY1), cost=1_000, request_id="req_p")
    shadow = replace(
        row(at(DAY1, 13), cost=9_000, key=None, user=None, team=None, org=None, model="gpt-4o"),
        request_id="req_p:shadow",
        endpoint=SHADOW_ENDPOINT,
        tags={"tollgate_shadow_of": "req_p"},
    )
    # A request refused before authentication names no tenant either; with the same model label it falls
    # in the shadow row's group of a batch, and must still be counted.
    anonymous = row(at(DAY1, 14), cost=500, key=None, user=None, team=None, org=None, model="gpt-4o", status=401)
    assert await ledger.write_batch([primary, shadow, anonymous]) == 3
    (stored,) = await ledger.rows_for_request("req_p:shadow")
    assert stored.endpoint == SHADOW_ENDPOINT and stored.cost_nanos == 9_000
    for by in GROUP_BYS:
        lines = await ledger.spend(by, DAY1, DAY1)
        assert sum(line.cost_nanos for line in lines) == 1_500, by
        assert sum(line.requests for line in lines) == 2, by
        assert sum(line.latency_buckets[1] for line in lines) == 2, by  # 12.5 ms: in (10, 25]
    totals = await ledger.scan_totals(DAY1, DAY1)
    assert (totals.requests, totals.cost_nanos) == (2, 1_500)
