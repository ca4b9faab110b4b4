"""Versioned schema migrations for the SQLite and PostgreSQL backends (``tollgate migrate``).

A migration is a named, append-only step (``keys_0002_tenancy_limits_budget``): each store module owns its
ordered list (``KEY_MIGRATIONS`` in ``sqlite.py``, ``LEDGER_PG_MIGRATIONS`` in ``ledger_postgres.py``...)
and a database applies the lists in order, each step once, recording it in the ``schema_migrations``
table (``version``, ``applied_at``) in the same transaction as its statements. So applying is idempotent
(a second run finds nothing pending), a step that fails leaves nothing half-done, and a database made
before this table existed is stamped: its first steps are ``CREATE ... IF NOT EXISTS`` (no-ops on the
tables it has, data untouched) and the later ones bring it up to date.

The gateway applies pending steps when it opens its storage (``storage.migrate_on_start``, default on);
with that off it refuses to start on a database that is behind (``SchemaBehindError``). PostgreSQL
replicas starting together apply them one at a time (an advisory lock).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    PGConnection = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

Migration = tuple[str, str]  # (version, SQL: statements separated by ';')

# Any constant shared by every Tollgate process: migrations of concurrent replicas run one at a time.
PG_MIGRATION_LOCK = 0x746F6C6C67617465  # "tollgate"
SQLITE_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at REAL)"
PG_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


class SchemaBehindError(RuntimeError):
    """The database lacks migrations and was not allowed to apply them (``storage.migrate_on_start: false``)."""

    def __init__(self, pending: Sequence[str]) -> None:
        self.pending = tuple(pending)
        super().__init__(
            f"the database schema is behind ({len(self.pending)} pending migration(s): {', '.join(self.pending)}) "
            "and storage.migrate_on_start is false: run 'tollgate migrate' first"
        )


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a ``migrate`` run found or did."""

    backend: str
    applied_before: tuple[str, ...]  # versions recorded before this run
    pending: tuple[Migration, ...]  # steps that were missing (applied now, unless a dry run)
    dry_run: bool

    @property
    def version(self) -> int:
        """The schema version after this run: how many known steps the database has."""
        return len(self.applied_before) + (0 if self.dry_run else len(self.pending))

    def render(self) -> str:
        lines: list[str] = []
        if not self.pending:
            lines.append(f"{self.backend}: schema up to date ({len(self.applied_before)} migrations applied).")
            return "\n".join(lines)
        verb = "would apply" if self.dry_run else "applied"
        lines.append(f"{self.backend}: {verb} {len(self.pending)} migration(s):")
        for version, sql in self.pending:
            lines.append(f"  {version}")
            if self.dry_run:
                lines += ["    " + line.strip() for line in sql.strip().splitlines() if line.strip()]
        lines.append(f"schema version: {self.version}")
        return "\n".join(lines)


def sqlite_migrations() -> tuple[Migration, ...]:
    """Every SQLite step in the order a database applies them."""
    from tollgate.state.ledger_sqlite import LEDGER_MIGRATIONS
    from tollgate.state.sqlite import AUDIT_MIGRATIONS, KEY_MIGRATIONS, TENANT_MIGRATIONS

    return KEY_MIGRATIONS + TENANT_MIGRATIONS + AUDIT_MIGRATIONS + LEDGER_MIGRATIONS


def postgres_migrations() -> tuple[Migration, ...]:
    """Every PostgreSQL step in the order a database applies them."""
    from tollgate.state.ledger_postgres import LEDGER_PG_MIGRATIONS
    from tollgate.state.postgres_keys import AUDIT_PG_MIGRATIONS, KEY_PG_MIGRATIONS, TENANT_PG_MIGRATIONS

    return KEY_PG_MIGRATIONS + TENANT_PG_MIGRATIONS + AUDIT_PG_MIGRATIONS + LEDGER_PG_MIGRATIONS


# SQLite


# The first release numbered its one step (``version INTEGER``); databases it made are converted to names.
_LEGACY_SQLITE_VERSIONS = {1: "keys_0001_api_keys"}


def sqlite_applied(conn: sqlite3.Connection) -> set[str]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return set()
    return {
        _LEGACY_SQLITE_VERSIONS.get(v, str(v)) if isinstance(v, int) else str(v)
        for (v,) in conn.execute("SELECT version FROM schema_migrations")
    }


def _convert_legacy_table(conn: sqlite3.Connection) -> None:
    """Turn a first-release ``schema_migrations`` (integer versions) into the named one, keeping its dates."""
    columns = conn.execute("PRAGMA table_info(schema_migrations)").fetchall()  # (cid, name, type, ...)
    if not any(c[1] == "version" and str(c[2]).upper() == "INTEGER" for c in columns):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
        conn.execute("CREATE TABLE schema_migrations_named (version TEXT PRIMARY KEY, applied_at REAL)")
        conn.executemany(
            "INSERT INTO schema_migrations_named VALUES (?, ?)",
            [(_LEGACY_SQLITE_VERSIONS.get(v, str(v)), at) for v, at in rows],
        )
        conn.execute("DROP TABLE schema_migrations")
        conn.execute("ALTER TABLE schema_migrations_named RENAME TO schema_migrations")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def sqlite_apply(conn: sqlite3.Connection, migrations: Sequence[Migration], *, apply: bool = True) -> list[Migration]:
    """Apply the pending steps (each in its own ``BEGIN IMMEDIATE`` transaction, with its record); returns them.
    With ``apply`` false, raises ``SchemaBehindError`` when any step is pending. ``conn`` is in autocommit."""
    pending = [m for m in migrations if m[0] not in sqlite_applied(conn)]
    if not pending:
        return []
    if not apply:
        raise SchemaBehindError([v for v, _ in pending])
    conn.execute(SQLITE_TABLE)
    _convert_legacy_table(conn)
    done: list[Migration] = []
    for version, sql in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it meanwhile: the write lock makes this check exact.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                conn.execute("COMMIT")
                continue
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append((version, sql))
    return done


def migrate_sqlite(path: str, *, dry_run: bool = False) -> MigrationReport:
    migrations = sqlite_migrations()
    if dry_run and path != ":memory:" and not Path(path).exists():
        return MigrationReport(f"sqlite {path}", (), migrations, True)  # a dry run creates no file
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        before = sqlite_applied(conn)
        pending = tuple(m for m in migrations if m[0] not in before)
        if not dry_run:
            pending = tuple(sqlite_apply(conn, migrations))
        return MigrationReport(f"sqlite {path}", tuple(sorted(before)), pending, dry_run)
    finally:
        conn.close()


# PostgreSQL


async def pg_applied(conn: PGConnection) -> set[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def pg_apply(conn: PGConnection, migrations: Sequence[Migration], *, apply: bool = True) -> list[Migration]:
    """Apply the pending steps in one transaction under the advisory lock; returns them. With ``apply``
    false, raises ``SchemaBehindError`` when any step is pending."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_MIGRATION_LOCK)
        done = await pg_applied(conn)
        pending = [m for m in migrations if m[0] not in done]
        if not pending:
            return []
        if not apply:
            raise SchemaBehindError([v for v, _ in pending])
        await conn.execute(PG_TABLE)
        for version, sql in pending:
            await conn.execute(sql)  # simple-query protocol: several statements in one go
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        return pending


async def migrate_postgres(dsn: str, *, schema: str | None = None, dry_run: bool = False) -> MigrationReport:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10, server_settings={"search_path": schema} if schema else None)
    try:
        migrations = postgres_migrations()
        before = await pg_applied(conn)
        pending = tuple(m for m in migrations if m[0] not in before)
        if not dry_run:
            if schema is not None:
                async with conn.transaction():  # under the lock: concurrent CREATE SCHEMA calls can collide
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_MIGRATION_LOCK)
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            pending = tuple(await pg_apply(conn, migrations))
        where = dsn.rsplit("@", 1)[-1]  # never the password
        return MigrationReport(f"postgresql {where}", tuple(sorted(before)), pending, dry_run)
    finally:
        await conn.close()


async def migrate_url(url: str, *, dry_run: bool = False) -> MigrationReport:
    """Migrate the database a ``storage.database_url`` names (``sqlite:///…`` or ``postgresql://…``)."""
    import asyncio

    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        path = (rest[1:] if rest.startswith("/") else rest) or ":memory:"
        return await asyncio.to_thread(migrate_sqlite, path, dry_run=dry_run)
    if scheme in ("postgresql", "postgres"):
        return await migrate_postgres(url, dry_run=dry_run)
    raise ValueError(f"nothing to migrate for a {scheme}:// database (sqlite:///PATH or postgresql://... only)")
