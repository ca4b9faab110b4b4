"""Versioned schema migrations on SQLite and the real PostgreSQL: fresh, re-run, dry run, legacy stamping,
and `storage.migrate_on_start: false` refusing a schema that is behind."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest

from tests.postgres import new_schema, require_postgres
from tollgate.cli import main
from tollgate.state.keys import new_key_record
from tollgate.state.ledger import LedgerRow
from tollgate.state.migrations import (
    SchemaBehindError,
    migrate_postgres,
    migrate_sqlite,
    postgres_migrations,
    sqlite_migrations,
)
from tollgate.state.postgres import PostgresStorage
from tollgate.state.sqlite import SQLiteStorage

# What the first release created: api_keys and a schema_migrations table numbering its one step.
FIRST_RELEASE_SQLITE = """
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL, name TEXT NOT NULL,
    user_id TEXT, team_id TEXT, role TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL,
    revoked_at REAL, allowed_models TEXT NOT NULL DEFAULT '[]', metadata TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO schema_migrations VALUES (1, 1700000000);
INSERT INTO api_keys VALUES ('key_old', 'hash-old', 'tg-...old', 'legacy', NULL, NULL, 'user', 1700000000,
    NULL, NULL, '["gpt-4o"]', '{"owner": "ops"}');
"""


def _versions(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()


def _tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_sqlite_fresh_database_gets_every_step_once_and_a_rerun_is_a_no_op(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    all_steps = [v for v, _ in sqlite_migrations()]
    first = migrate_sqlite(str(db))
    assert [v for v, _ in first.pending] == all_steps and first.version == len(all_steps)
    assert sorted(all_steps) == _versions(db)
    assert {"api_keys", "orgs", "teams", "users", "audit_log", "ledger", "spend_daily"} <= _tables(db)
    again = migrate_sqlite(str(db))
    assert again.pending == () and again.version == len(all_steps)
    assert "up to date" in again.render()
    assert _versions(db) == sorted(all_steps)


def test_sqlite_dry_run_changes_nothing_and_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "none" / "t.db"
    report = migrate_sqlite(str(db), dry_run=True)
    assert not db.exists() and not db.parent.exists()
    assert len(report.pending) == len(sqlite_migrations()) and "would apply" in report.render()
    assert "CREATE TABLE IF NOT EXISTS ledger" in report.render()  # the SQL is shown
    # On a database that is behind: pending steps are listed, nothing is applied.
    legacy = tmp_path / "legacy.db"
    sqlite3.connect(legacy).executescript(FIRST_RELEASE_SQLITE)
    report = migrate_sqlite(str(legacy), dry_run=True)
    assert "keys_0001_api_keys" in report.applied_before
    assert [v for v, _ in report.pending] == [v for v, _ in sqlite_migrations()][1:]
    assert "ledger" not in _tables(legacy)


async def test_sqlite_first_release_database_is_stamped_and_upgraded_without_data_loss(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(FIRST_RELEASE_SQLITE)
    conn.close()
    report = migrate_sqlite(str(db))
    assert report.applied_before == ("keys_0001_api_keys",)
    assert "keys_0001_api_keys" not in [v for v, _ in report.pending]
    assert _versions(db) == sorted(v for v, _ in sqlite_migrations())
    conn = sqlite3.connect(db)
    dated = conn.execute("SELECT applied_at FROM schema_migrations WHERE version = 'keys_0001_api_keys'").fetchone()
    conn.close()
    assert dated == (1700000000,)  # the original date is kept
    storage = SQLiteStorage(str(db), migrate=False)  # nothing pending any more
    try:
        old = await storage.keys.get("key_old")
        assert old is not None and old.name == "legacy" and old.allowed_models == ("gpt-4o",)
        assert old.metadata == {"owner": "ops"} and old.org_id is None  # new columns take their defaults
    finally:
        await storage.close()


async def test_sqlite_migrate_off_refuses_a_schema_that_is_behind(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with pytest.raises(SchemaBehindError) as caught:
        SQLiteStorage(str(db), migrate=False)
    assert "tollgate migrate" in str(caught.value) and caught.value.pending[0] == "keys_0001_api_keys"
    migrate_sqlite(str(db))
    storage = SQLiteStorage(str(db), migrate=False)
    try:
        await storage.keys.put(new_key_record(name="k")[1])
        assert len(await storage.keys.list()) == 1
    finally:
        await storage.close()


def test_cli_migrate_and_serve_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"server:\n  data_dir: {tmp_path / 'data'}\n"
        f"storage:\n  database_url: sqlite:///{db}\n  migrate_on_start: false\n"
    )
    assert main(["migrate", "--config", str(config), "--dry-run"]) == 0
    assert "would apply" in capsys.readouterr().out and not db.exists()
    # serve refuses a database that is behind when migrations at start are off, with a clear message.
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "schema is behind" in err and "tollgate migrate" in err and "Traceback" not in err
    # So do the admin commands: they leave schema changes to `tollgate migrate` as well.
    assert main(["keys", "--config", str(config), "list"]) == 2
    assert "tollgate migrate" in capsys.readouterr().err
    assert "api_keys" not in _tables(db)  # nothing was created behind the operator's back
    assert main(["migrate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"applied {len(sqlite_migrations())} migration(s)" in out
    assert main(["migrate", "--config", str(config)]) == 0
    assert "up to date" in capsys.readouterr().out
    memory = tmp_path / "m.yaml"
    memory.write_text("storage:\n  database_url: memory://\n")
    assert main(["migrate", "--config", str(memory)]) == 2
    assert "nothing to migrate" in capsys.readouterr().err


# PostgreSQL: the real server, one schema per test.


async def _pg_tables(url: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_postgres_fresh_rerun_and_dry_run() -> None:
    url = require_postgres()
    schema = new_schema()
    try:
        dry = await migrate_postgres(url, schema=schema, dry_run=True)
        assert len(dry.pending) == len(postgres_migrations()) and await _pg_tables(url, schema) == set()
        first = await migrate_postgres(url, schema=schema)
        assert [v for v, _ in first.pending] == [v for v, _ in postgres_migrations()]
        assert {"schema_migrations", "api_keys", "ledger", "spend_daily", "audit_log"} <= await _pg_tables(url, schema)
        again = await migrate_postgres(url, schema=schema)
        assert again.pending == () and again.version == len(postgres_migrations())
        assert "@" not in again.render().split("postgresql ", 1)[1].split(":")[0]  # no credentials shown
    finally:
        await _drop(url, schema)


async def test_postgres_database_made_without_the_table_is_stamped_without_data_loss() -> None:
    url = require_postgres()
    schema = new_schema()
    ledger_sql = dict(postgres_migrations())["ledger_0001_ledger_and_daily"]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(ledger_sql)  # the tables, as an older build made them, with no record of it
        await conn.execute(
            "INSERT INTO ledger (id, request_id, ts, endpoint, input_tokens, output_tokens, cached_tokens, cost_nanos,"
            " latency_ms, status, cache_hit, stream, client_disconnected, usage_estimated)"
            " VALUES ('lg_old', 'req-old', now(), 'chat', 1, 2, 0, 42, 1.0, 200, false, false, false, false)"
        )
    finally:
        await conn.close()
    try:
        report = await migrate_postgres(url, schema=schema)
        assert report.applied_before == () and len(report.pending) == len(postgres_migrations())
        storage = PostgresStorage(url, schema=schema, migrate=False)
        try:
            rows = await storage.ledger.rows_for_request("req-old")
            assert [(r.id, r.cost_nanos) for r in rows] == [("lg_old", 42)]
            written = await storage.ledger.write_batch(
                [LedgerRow(id="lg_new", request_id="req-new", ts=time.time(), endpoint="chat")]
            )
            assert written == 1
        finally:
            await storage.close()
    finally:
        await _drop(url, schema)


async def test_postgres_migrate_off_refuses_a_schema_that_is_behind() -> None:
    url = require_postgres()
    schema = new_schema()
    storage = PostgresStorage(url, schema=schema, migrate=False)
    try:
        with pytest.raises(SchemaBehindError):
            await storage.ping()
    finally:
        await storage.close()
        await _drop(url, schema)


async def test_postgres_replicas_migrating_at_once_apply_each_step_once() -> None:
    url = require_postgres()
    schema = new_schema()
    try:
        reports = await asyncio.gather(*(migrate_postgres(url, schema=schema) for _ in range(3)))
        assert sum(len(r.pending) for r in reports) == len(postgres_migrations())
        conn = await asyncpg.connect(url)
        try:
            count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".schema_migrations')
        finally:
            await conn.close()
        assert count == len(postgres_migrations())
    finally:
        await _drop(url, schema)
