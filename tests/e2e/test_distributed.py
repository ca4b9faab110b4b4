"""Distributed mode: two real `tollgate serve` replicas sharing PostgreSQL and Redis hold one limit, one ledger."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.e2e.cluster import (
    CLEAN_ENV,
    REDIS_URL,
    Replica,
    all_ready,
    create_database,
    delete_redis_prefix,
    drop_database,
    require_backends,
    start_replica,
    stop_replicas,
)
from tests.e2e.cluster import run_sync as _run
from tests.fakes.harness import free_port
from tollgate.core.auth import POSITIVE_TTL, Authenticator
from tollgate.errors import AuthenticationError
from tollgate.state.invalidation import LocalInvalidationBus, RedisInvalidationBus
from tollgate.state.keys import KeyRecord, new_key_record
from tollgate.state.memory import MemoryKeyStore

pytestmark = pytest.mark.slow

MASTER = "tg-master-distributed-test"
MODEL = "demo/tollgate-demo"
RPM = 10
BURST = 30
# The bound the fan-out must meet; the TTL fallback would take up to POSITIVE_TTL (5 s).
FANOUT_BOUND = 1.0


@pytest.fixture(scope="module", autouse=True)
def backends() -> None:
    """Skip the module when PostgreSQL or Redis does not answer, except in CI (``CI`` set), where that fails."""
    require_backends("distributed mode")


@dataclass
class Cluster:
    """Two gateway processes on one PostgreSQL database and one Redis key prefix, both made for this run."""

    config: Path
    database_url: str
    replicas: list[Replica]
    burst_ids: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def a(self) -> Replica:
        return self.replicas[0]

    @property
    def b(self) -> Replica:
        return self.replicas[1]

    def stop(self) -> list[int | None]:
        """SIGTERM every replica still running and wait (bounded): a clean stop flushes the ledger writers."""
        return stop_replicas(self.replicas)


def _write_config(folder: Path, database_url: str, prefix: str) -> Path:
    config = folder / "tollgate.yaml"
    config.write_text(
        f"""
storage:
  database_url: {database_url}
rate_limits:
  counter_url: {REDIS_URL}
  key_prefix: "{prefix}"
pricing:
  models:
    tollgate-demo: {{input: 1.0, output: 2.0}}
    demo/budgeted-demo: {{input: 0, output: 0, per_request: 0.01}}
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run = uuid.uuid4().hex[:12]
    database = f"tollgate_dist_{run}"
    prefix = f"tollgate:dist:{run}:"
    database_url = create_database(database)
    folder = tmp_path_factory.mktemp("distributed")
    config = _write_config(folder, database_url, prefix)
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):
            (folder / name).mkdir()
            replicas.append(start_replica(name, config, folder / name, MASTER))
        _run(all_ready(replicas))
        yield Cluster(config, database_url, replicas)
    finally:
        Cluster(config, database_url, replicas).stop()
        drop_database(database)
        delete_redis_prefix(prefix)


async def _admin(
    session: aiohttp.ClientSession, replica: Replica, path: str, body: dict[str, object]
) -> dict[str, str]:
    async with session.post(replica.base + path, json=body, headers={"Authorization": f"Bearer {MASTER}"}) as resp:
        answer = await resp.json()
        assert resp.status in (200, 201), answer
        return {k: v for k, v in answer.items() if isinstance(v, str)}


async def _chat(session: aiohttp.ClientSession, replica: Replica, key: str, request_id: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
    async with session.post(replica.base + "/v1/chat/completions", json=body, headers=headers) as resp:
        await resp.read()
        if request_id is not None:
            assert resp.headers.get("x-request-id") == request_id
        return resp.status


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def test_two_replicas_enforce_one_global_rate_limit(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    a = cluster.a
    await _admin(session, a, "/admin/orgs", {"id": "dist-org", "name": "Dist"})
    await _admin(
        session, a, "/admin/teams", {"id": "dist-team", "org_id": "dist-org", "name": "T", "limits": {"rpm": RPM}}
    )
    await _admin(session, a, "/admin/users", {"id": "dist-user", "team_id": "dist-team"})
    for name in ("k1", "k2"):
        made = await _admin(session, a, "/admin/keys", {"name": name, "user_id": "dist-user"})
        cluster.keys[name], cluster.key_ids[name] = made["key"], made["id"]
    cluster.burst_ids = [f"dist-{uuid.uuid4().hex}" for _ in range(BURST)]
    statuses = await asyncio.gather(
        *(
            _chat(session, cluster.replicas[i % 2], cluster.keys["k1" if i % 4 < 2 else "k2"], rid)
            for i, rid in enumerate(cluster.burst_ids)
        )
    )
    assert sorted(statuses) == [200] * RPM + [429] * (BURST - RPM), statuses


async def test_revocation_reaches_the_other_replica_within_a_second(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    key = cluster.keys["k2"]
    # B has the key cached (429: authenticated, then refused by the exhausted team limit).
    assert await _chat(session, cluster.b, key) == 429
    await _admin(session, cluster.a, f"/admin/keys/{cluster.key_ids['k2']}/revoke", {})
    assert await _refused_within(session, cluster.b, key) < FANOUT_BOUND


async def test_rotation_reaches_the_other_replica_within_a_second(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    old = cluster.keys["k1"]
    assert await _chat(session, cluster.b, old) == 429
    rotated = await _admin(session, cluster.a, f"/admin/keys/{cluster.key_ids['k1']}/rotate", {})
    assert await _refused_within(session, cluster.b, old) < FANOUT_BOUND
    assert await _chat(session, cluster.b, rotated["key"]) == 429  # the new secret works (and is still limited)


async def test_two_replicas_hold_one_global_budget(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    """A $0.10 team budget at $0.01 a request: of 30 concurrent requests on both replicas, exactly 10 pass."""
    a = cluster.a
    await _admin(
        session,
        a,
        "/admin/teams",
        {"id": "dist-budget", "org_id": "dist-org", "name": "B", "budget": {"limit_usd": 0.10, "period": "total"}},
    )
    await _admin(session, a, "/admin/users", {"id": "dist-spender", "team_id": "dist-budget"})
    key = (await _admin(session, a, "/admin/keys", {"name": "spender", "user_id": "dist-spender"}))["key"]
    body = {"model": "demo/budgeted-demo", "messages": [{"role": "user", "content": "hello"}]}

    async def call(replica: Replica) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        async with session.post(replica.base + "/v1/chat/completions", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(call(cluster.replicas[i % 2]) for i in range(BURST)))
    assert sorted(statuses) == [200] * 10 + [402] * (BURST - 10), statuses


async def _refused_within(session: aiohttp.ClientSession, replica: Replica, key: str) -> float:
    """Seconds until ``replica`` answers 401 for ``key``; polls for up to twice the TTL."""
    start = time.monotonic()
    while time.monotonic() - start < 2 * POSITIVE_TTL:
        if await _chat(session, replica, key) == 401:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{replica.name} still accepts the key after {2 * POSITIVE_TTL} s")


def test_ledger_holds_every_request_once_and_the_chargeback_adds_up(cluster: Cluster) -> None:
    assert cluster.burst_ids, "the burst test must run first"
    # uvicorn re-raises the SIGTERM after its graceful shutdown (lifespan end: the ledger writers flushed).
    codes = cluster.stop()
    assert all(code in (0, -signal.SIGTERM) for code in codes), (
        codes,
        [r.log.read_text()[-2000:] for r in cluster.replicas],
    )
    rows = _run(_ledger(cluster.database_url, cluster.burst_ids))
    counted = {rid: n for rid, n, _ in rows}
    assert counted == dict.fromkeys(cluster.burst_ids, 1)
    assert sorted(status for _, _, status in rows) == [200] * RPM + [429] * (BURST - RPM)
    command = [sys.executable, "-m", "tollgate", "report", "--config", str(cluster.config), "spend", "--by", "team"]
    report = subprocess.run(
        [*command, "--format", "json", "--verify"], env=CLEAN_ENV, capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 0, report.stderr
    assert "OK" in report.stderr  # the aggregates agree with a full scan of the ledger
    answer = json.loads(report.stdout)
    lines, total = answer["data"], answer["total"]
    by_team = _run(_ledger_by_team(cluster.database_url))
    assert {line["team"]: (line["requests"], line["cost_nanousd"]) for line in lines} == by_team
    assert (total["requests"], total["cost_nanousd"]) == (
        sum(n for n, _ in by_team.values()),
        sum(c for _, c in by_team.values()),
    )
    assert by_team["dist-team"][1] > 0  # the demo model is priced in this run's config: real money adds up


async def _ledger(database_url: str, request_ids: list[str]) -> list[tuple[str, int, int]]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        found = await conn.fetch(
            "SELECT request_id, count(*) AS n, min(status) AS status FROM ledger "
            "WHERE request_id = ANY($1::text[]) GROUP BY request_id",
            request_ids,
        )
    finally:
        await conn.close()
    return [(r["request_id"], r["n"], r["status"]) for r in found]


async def _ledger_by_team(database_url: str) -> dict[str | None, tuple[int, int]]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT team_id, count(*) AS n, sum(cost_nanos) AS cost FROM ledger GROUP BY team_id")
    finally:
        await conn.close()
    return {r["team_id"]: (int(r["n"]), int(r["cost"])) for r in rows}


# The bus itself, in one process: the fan-out over the real Redis, and the fallback when Redis is unreachable.


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait until ``condition()`` holds, for at most ``seconds`` (the caller asserts what follows)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - the bus exposes counters, not events
        await asyncio.sleep(0.005)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_bus_fans_a_revocation_out_over_redis() -> None:
    store = MemoryKeyStore()
    clock = _Clock()
    channel = f"tollgate:invalidate:test:{uuid.uuid4().hex}"  # this test's alone
    buses = [RedisInvalidationBus(REDIS_URL, channel=channel) for _ in "ab"]
    a, b = (Authenticator(store, MASTER, clock=clock) for _ in "ab")
    a.attach(buses[0])
    b.attach(buses[1])
    for bus in buses:
        await bus.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(bus.subscribed.wait() for bus in buses)), 5)
        key, record = new_key_record(name="svc")
        await store.put(record)
        await a.authenticate(key)
        await b.authenticate(key)
        revoked = await store.revoke(record.id, clock.now)
        assert revoked is not None
        a.invalidate(revoked)
        await _until(lambda: buses[1].received > 0, FANOUT_BOUND)
        with pytest.raises(AuthenticationError, match="revoked"):
            await b.authenticate(key)  # the fake clock never moved: only the message can have done this
    finally:
        for bus in buses:
            await bus.stop()


async def test_with_redis_unreachable_the_bus_falls_back_to_the_cache_ttl() -> None:
    store = MemoryKeyStore()
    clock = _Clock()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    buses = [RedisInvalidationBus(dead, timeout_seconds=0.2, retry_interval=0.1) for _ in "ab"]
    a, b = (Authenticator(store, MASTER, clock=clock) for _ in "ab")
    a.attach(buses[0])
    b.attach(buses[1])
    for bus in buses:
        await bus.start()
    try:
        key, record = new_key_record(name="svc")
        await store.put(record)
        await b.authenticate(key)
        revoked = await store.revoke(record.id, clock.now)
        assert revoked is not None
        a.invalidate(revoked)  # publishing must neither raise nor block
        with pytest.raises(AuthenticationError, match="revoked"):
            await a.authenticate(key)
        await _until(lambda: buses[0].publish_errors > 0, 5.0)
        assert buses[0].publish_errors >= 1 and not buses[1].subscribed.is_set()
        clock.now += POSITIVE_TTL - 0.1
        assert (await b.authenticate(key)).key_id == record.id  # stale, from B's cache, until the TTL ends
        clock.now += 0.2
        with pytest.raises(AuthenticationError, match="revoked"):
            await b.authenticate(key)
    finally:
        for bus in buses:
            await bus.stop()


async def test_in_process_bus_fans_out_between_authenticators_and_a_racing_read_is_not_cached() -> None:
    clock = _Clock()
    store = _SlowKeyStore()
    bus = LocalInvalidationBus()
    a, b = (Authenticator(store, MASTER, clock=clock) for _ in "ab")
    a.attach(bus)
    b.attach(bus)
    key, record = new_key_record(name="svc", team_id="t1")
    await store.put(record)
    await b.authenticate(key)
    assert await store.revoke(record.id, clock.now) is not None
    a.invalidate_scope("team", "t1")  # e.g. the team changed: B must re-read every key of it
    with pytest.raises(AuthenticationError, match="revoked"):
        await b.authenticate(key)
    # A read of the store that an invalidation overtakes is served once, never cached.
    key, record = new_key_record(name="svc2")
    await store.put(record)
    store.hold = True
    reading = asyncio.create_task(b.authenticate(key))
    await store.reading.wait()
    revoked = await store.revoke(record.id, clock.now)
    assert revoked is not None
    a.invalidate(revoked)
    store.release.set()
    assert (await reading).key_id == record.id  # read before the revocation: served to that request only
    with pytest.raises(AuthenticationError, match="revoked"):
        await b.authenticate(key)


class _SlowKeyStore(MemoryKeyStore):
    """The in-memory key store, whose next read (when ``hold`` is set) waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        record = await super().get_by_hash(key_hash)
        if self.hold:
            self.hold = False
            self.reading.set()
            await self.release.wait()
        return record
