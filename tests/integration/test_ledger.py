"""The spend ledger end to end: a real gateway, concurrent traffic, a database that goes away, and the reports."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.fakes.harness import FakeServer, free_port
from tests.gateway import RunningGateway, run_gateway
from tests.postgres import new_schema, require_postgres
from tollgate.api import admin_spend
from tollgate.api.app import RouteSpec
from tollgate.context import RequestContext
from tollgate.policies.ledger import LedgerPolicy
from tollgate.pricing import PriceBook
from tollgate.state.keys import new_key_record
from tollgate.state.ledger import LedgerRow, LedgerStore
from tollgate.state.ledger_memory import MemoryLedgerStore
from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS, PostgresLedgerStore
from tollgate.state.postgres import PostgresDatabase

CHAT = "/v1/chat/completions"
# gpt-4o-mini: $0.15 input, $0.60 output per million tokens = 150 and 600 nano-dollars per token.
MINI_IN, MINI_OUT = 150, 600


def _env(fake_openai: FakeServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}


@contextlib.asynccontextmanager
async def attached_ledger(running: RunningGateway, store: LedgerStore, spool: Path) -> AsyncIterator[LedgerPolicy]:
    """A ledger policy on this gateway's FINALIZE phase, with the given store, a short flush interval and its
    writer on the test's loop; it stands in for the app's own ledger policy (if any) during the test."""
    gw = running.app.gateway
    policy = LedgerPolicy(
        store, PriceBook(), spool, batch_size=50, flush_interval=0.05, retry_min=0.1, retry_max=0.3, write_timeout=5
    )
    original = gw.pipeline.finalize
    gw.pipelines = gw.pipelines.with_default(
        finalize=(*(p for p in original if not isinstance(p, LedgerPolicy)), policy)
    )
    await policy.start()
    try:
        yield policy
    finally:
        await policy.stop()
        gw.pipelines = gw.pipelines.with_default(finalize=original)


async def _chat(
    session: aiohttp.ClientSession, gw: RunningGateway, body: Mapping[str, object], request_id: str
) -> tuple[int, dict[str, object] | None]:
    headers = {**gw.auth(), "x-request-id": request_id}
    async with session.post(gw.base_url + CHAT, data=orjson.dumps(body), headers=headers) as resp:
        raw = await resp.read()
        if body.get("stream"):
            usage = None
            for line in raw.split(b"\n"):
                if line.startswith(b"data: {"):
                    chunk = orjson.loads(line[6:])
                    usage = chunk.get("usage") or usage
            return resp.status, usage
        payload = orjson.loads(raw)
        return resp.status, payload.get("usage") if resp.status == 200 else None


async def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15.0
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def _mini_cost(usage: dict[str, object]) -> int:
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    assert isinstance(prompt, int) and isinstance(completion, int)
    return prompt * MINI_IN + completion * MINI_OUT


@pytest.fixture
def sqlite_gateway(fake_openai: FakeServer, tmp_path: Path) -> Iterator[RunningGateway]:
    env = {**_env(fake_openai), "TOLLGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'tollgate.db'}"}
    with run_gateway("", env) as running:
        if ("GET", "/admin/spend") not in running.app.routes:  # until the lead registers the route
            running.app.routes[("GET", "/admin/spend")] = RouteSpec(admin_spend.spend, "admin", "admin")
        yield running


async def test_every_request_is_recorded_exactly_once_with_its_tokens_and_cost(
    sqlite_gateway: RunningGateway, tmp_path: Path
) -> None:
    gw = sqlite_gateway
    store = gw.app.gateway.storage.ledger
    plan: list[tuple[str, dict[str, object]]] = []
    for i in range(40):
        plan.append((f"ok-{i}", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi " * i}]}))
    for i in range(15):
        body: dict[str, object] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "stream " * i}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "metadata": {"project": "apollo", "ticket": 123},
        }
        plan.append((f"stream-{i}", body))
    for i in range(15):
        plan.append((f"demo-{i}", {"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "x"}]}))
    for i in range(5):
        plan.append((f"fail-{i}", {"model": "openai/scenario-500", "messages": [{"role": "user", "content": "x"}]}))
    for i in range(5):
        body = {"model": "openai/scenario-cut_stream", "messages": [{"role": "user", "content": "x"}], "stream": True}
        plan.append((f"cut-{i}", body))
    run = uuid.uuid4().hex[:8]
    async with attached_ledger(gw, store, tmp_path / "spool.jsonl") as policy:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(_chat(session, gw, body, f"{run}-{name}") for name, body in plan))
        await policy.flush()
        assert policy.spooled == 0
    for (name, body), (status, usage) in zip(plan, results, strict=True):
        rows = await store.rows_for_request(f"{run}-{name}")
        assert len(rows) == 1, f"{name}: {len(rows)} ledger rows"
        row = rows[0]
        if name.startswith("cut-"):
            # The client saw 200 (the stream had started) and then an error event: the row records the error.
            assert status == 200 and row.status >= 500 and row.error_type, name
        else:
            assert row.status == status, name
        assert row.stream == bool(body.get("stream")), name
        assert row.key_id is not None
        if name.startswith(("ok-", "stream-")):
            assert status == 200 and usage is not None
            assert (row.input_tokens, row.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
            assert row.cost_nanos == _mini_cost(usage), name
            assert (row.provider, row.upstream_model) == ("openai", "gpt-4o-mini")
        if name.startswith("stream-"):
            assert row.tags == {"project": "apollo"}  # string values only
        if name.startswith("demo-"):
            assert status == 200 and row.provider == "demo" and row.cost_nanos == 0
            assert row.output_tokens > 0
        if name.startswith("fail-"):
            assert status >= 500 and row.cost_nanos == 0 and row.error_type
        if name.startswith("cut-"):
            assert row.stream and row.upstream_model == "scenario-cut_stream"


async def test_reports_from_the_cli_and_the_admin_api_add_up_to_the_ledger(
    sqlite_gateway: RunningGateway, tmp_path: Path
) -> None:
    gw = sqlite_gateway
    storage = gw.app.gateway.storage
    key, record = new_key_record(name="viewer-less", role="user")
    await storage.keys.put(record)
    plan = [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "report " * i}]} for i in range(20)] + [
        {"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "x"}]} for _ in range(10)
    ]
    async with attached_ledger(gw, storage.ledger, tmp_path / "spool.jsonl") as policy:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(_chat(session, gw, b, f"rep-{i}") for i, b in enumerate(plan)))
        await policy.flush()
    expected = sum(_mini_cost(u) for (s, u), b in zip(results, plan, strict=True) if b["model"] == "gpt-4o-mini" and u)
    assert expected > 0

    env = {
        "PATH": os.environ.get("PATH", ""),
        "TOLLGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'tollgate.db'}",
        "TOLLGATE_DATA_DIR": str(tmp_path),
        # The CLI of the code under test (a checkout run with PYTHONPATH=src), not another installed copy.
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    cli = [sys.executable, "-m", "tollgate", "report", "spend"]
    done = await asyncio.to_thread(_run, [*cli, "--by", "model", "--format", "json", "--verify"], env)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stderr
    report = orjson.loads(done.stdout)
    assert report["total"]["requests"] == 30
    assert report["total"]["cost_nanousd"] == expected
    by_model = {line["model"]: line for line in report["data"]}
    assert by_model["openai/gpt-4o-mini"]["cost_nanousd"] == expected
    assert by_model["demo/tollgate-demo"]["requests"] == 10
    # No cache here: no hits, nothing saved, and the columns say so.
    assert (report["total"]["cache_hits"], report["total"]["cost_saved_nanousd"]) == (0, 0)
    assert report["total"]["latency_p50_ms"] > 0
    table = await asyncio.to_thread(_run, [*cli, "--by", "day"], env)
    assert table.returncode == 0 and "TOTAL" in table.stdout
    head = next(line for line in table.stdout.splitlines() if line.startswith("DAY"))
    assert "CACHE HITS" in head and head.endswith("SAVED (USD)")
    bad = await asyncio.to_thread(_run, [*cli, "--since", "2026-13-01"], env)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    # The master key's requests belong to no team: a team's report is empty, and cannot group by org.
    team = await asyncio.to_thread(_run, [*cli, "--team", "nobody", "--by", "user", "--format", "json"], env)
    assert team.returncode == 0, team.stderr
    assert orjson.loads(team.stdout)["total"]["requests"] == 0
    assert orjson.loads(team.stdout)["team"] == "nobody"
    by_org = await asyncio.to_thread(_run, [*cli, "--team", "nobody", "--by", "org"], env)
    assert by_org.returncode == 2 and "within team 'nobody'" in by_org.stderr

    async with aiohttp.ClientSession() as session:
        url = gw.base_url + "/admin/spend"
        async with session.get(url, params={"by": "key"}, headers=gw.auth()) as resp:
            assert resp.status == 200
            body = orjson.loads(await resp.read())
        assert body["total"]["cost_nanousd"] == expected and body["total"]["requests"] == 30
        assert sum(line["cost_nanousd"] for line in body["data"]) == expected
        async with session.get(url, params={"by": "day", "format": "csv"}, headers=gw.auth()) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(await resp.text())))
        assert rows[0][0] == "day" and rows[-1][0] == "TOTAL"
        assert rows[-1][6] == f"{expected // 10**9}.{expected % 10**9:09d}"
        async with session.get(url, headers=gw.auth(key)) as resp:
            assert resp.status == 403
            assert "role" in orjson.loads(await resp.read())["error"]["message"]
        async with session.get(url, params={"by": "colour"}, headers=gw.auth()) as resp:
            assert resp.status == 400


class TCPProxy:
    """A loopback proxy to PostgreSQL that the test can take down and bring back: a real outage."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_nothing_is_lost_while_postgresql_is_down(fake_openai: FakeServer, tmp_path: Path) -> None:
    url = require_postgres()
    target = urlsplit(url)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxied = url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    schema = new_schema()
    db = PostgresDatabase(proxied, LEDGER_PG_MIGRATIONS, schema=schema, connect_timeout=1.0)
    direct = PostgresDatabase(url, LEDGER_PG_MIGRATIONS, schema=schema)
    ledger = PostgresLedgerStore(direct)  # reads go around the proxy
    spool = tmp_path / "spool.jsonl"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "outage"}]}
    try:
        with run_gateway("", _env(fake_openai)) as gw:
            async with attached_ledger(gw, PostgresLedgerStore(db), spool) as policy:
                # 1. The database is unreachable from the start: requests go on, rows pile up in the spool.
                async with aiohttp.ClientSession() as session:
                    first = await asyncio.gather(*(_chat(session, gw, body, f"down-{i}") for i in range(30)))
                assert all(status == 200 for status, _ in first)
                await _wait_for(lambda: policy.spool.count() == 30 and policy.queued == 0, "30 spooled rows")
                assert policy.failures >= 1

                # 2. It comes back: the spool is replayed, in order, and emptied.
                await proxy.up()
                await _wait_for(lambda: not policy.spool.pending(), "the spool to drain")
                assert (await ledger.scan_totals(*_today())).requests == 30

                # 3. It goes away again mid-traffic, and comes back.
                await proxy.down()
                async with aiohttp.ClientSession() as session:
                    second = await asyncio.gather(*(_chat(session, gw, body, f"again-{i}") for i in range(20)))
                await _wait_for(lambda: policy.spool.count() == 20 and policy.queued == 0, "20 more spooled rows")
                await proxy.up()
                await _wait_for(lambda: not policy.spool.pending(), "the spool to drain again")

                # 4. A batch that committed but whose acknowledgement was lost is replayed: still once.
                already = [r for i in range(5) for r in await ledger.rows_for_request(f"down-{i}")]
                policy.spool.append(already)
                await policy.flush()
                assert not policy.spool.pending()

        names = [f"down-{i}" for i in range(30)] + [f"again-{i}" for i in range(20)]
        results = first + second
        for name, (_, usage) in zip(names, results, strict=True):
            rows: list[LedgerRow] = await ledger.rows_for_request(name)
            assert len(rows) == 1, f"{name}: {len(rows)} rows"
            assert usage is not None and rows[0].cost_nanos == _mini_cost(usage)
        scan = await ledger.scan_totals(*_today())
        assert scan.requests == 50
        by_key = await ledger.spend("key", *_today())
        assert sum(line.cost_nanos for line in by_key) == scan.cost_nanos
        assert sum(line.requests for line in by_key) == 50
    finally:
        await proxy.down()
        await db.close()
        await direct.drop_schema()


def _today() -> tuple[date, date]:
    now = datetime.now(UTC).date()
    return now - timedelta(days=1), now + timedelta(days=1)  # a run across midnight stays inside


def _ctx(request_id: str) -> RequestContext:
    return RequestContext(request_id=request_id, front_door="openai", endpoint="chat", config_version="v")


async def test_a_full_queue_spills_to_the_spool_and_stop_flushes_everything(tmp_path: Path) -> None:
    store = MemoryLedgerStore()
    policy = LedgerPolicy(store, PriceBook(), tmp_path / "spool.jsonl", batch_size=10, max_queue=25)

    # The writer is not running yet: the first 25 rows queue, the next 15 spill to the spool (fsync'd).
    for i in range(40):
        policy.on_finalize(_ctx(f"q-{i}"))
    assert policy.queued == 25
    assert policy.spool.count() == 15
    await policy.start()
    await policy.stop()
    assert policy.queued == 0 and not policy.spool.pending()
    for i in range(40):
        assert len(await store.rows_for_request(f"q-{i}")) == 1
    # After stop, nothing is dropped either: rows go straight to the spool, for the next start.
    policy.on_finalize(_ctx("late"))
    assert policy.spool.count() == 1
    await policy.start()
    await policy.stop()
    assert len(await store.rows_for_request("late")) == 1


async def test_rows_of_a_killed_process_are_recovered_from_the_journal_exactly_once(tmp_path: Path) -> None:
    store = MemoryLedgerStore()
    spool = tmp_path / "spool.jsonl"
    # A writer that would not write for an hour: rows stay queued in memory, as in the 200 ms between passes.
    killed = LedgerPolicy(store, PriceBook(), spool, flush_interval=3600)
    await killed.start()
    for i in range(10):
        killed.on_finalize(_ctx(f"early-{i}"))
    await killed.flush()  # written; their journal segment is released
    for i in range(20):
        killed.on_finalize(_ctx(f"late-{i}"))
    assert killed.queued == 20 and killed.journal is not None
    assert len(killed.journal.segments()) == 1
    # Five of them reached the database just before the kill (a batch committed, its segment not yet released).
    await store.write_batch(list(killed._queue)[:5])
    # The kill: the writer dies with its queue; only the files survive.
    assert killed._task is not None
    killed._task.cancel()
    killed.journal.close()

    restarted = LedgerPolicy(store, PriceBook(), spool)
    await restarted.start()
    await restarted.stop()
    for rid in [f"early-{i}" for i in range(10)] + [f"late-{i}" for i in range(20)]:
        assert len(await store.rows_for_request(rid)) == 1, rid
    assert restarted.journal is not None and restarted.journal.segments() == []
    assert not restarted.spool.pending()


async def test_the_journal_is_released_as_batches_are_written(tmp_path: Path) -> None:
    store = MemoryLedgerStore()
    policy = LedgerPolicy(store, PriceBook(), tmp_path / "spool.jsonl", flush_interval=3600)
    await policy.start()
    assert policy.journal is not None
    for i in range(3):
        policy.on_finalize(_ctx(f"j-{i}"))
    (segment,) = policy.journal.segments()
    assert segment.read_bytes().count(b"\n") == 3  # on disk before any database write
    await policy.flush()
    assert [p.name for p in policy.journal.segments()] != [segment.name]  # released; a fresh one is open
    await policy.stop()
    assert policy.journal.segments() == []
