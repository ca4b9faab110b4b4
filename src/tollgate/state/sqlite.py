"""SQLite backend (``sqlite:///path``): the embedded default. Calls run in a worker thread, serialised."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson

from tollgate.state.keys import KeyRecord

T = TypeVar("T")

# Versioned, append-only: a migration is never edited once released.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        name TEXT NOT NULL,
        user_id TEXT,
        team_id TEXT,
        role TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        allowed_models TEXT NOT NULL DEFAULT '[]',
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    """,
)

_COLUMNS = (
    "id, key_hash, hint, name, user_id, team_id, role, created_at, expires_at, revoked_at, allowed_models, metadata"
)


def _row(row: tuple) -> KeyRecord:  # type: ignore[type-arg]
    return KeyRecord(
        id=row[0],
        key_hash=row[1],
        hint=row[2],
        name=row[3],
        user_id=row[4],
        team_id=row[5],
        role=row[6],
        created_at=row[7],
        expires_at=row[8],
        revoked_at=row[9],
        allowed_models=tuple(orjson.loads(row[10])),
        metadata=orjson.loads(row[11]),
    )


class SQLiteDatabase:
    """One connection per process in WAL mode; all statements go through one lock on a worker thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        done = {r[0] for r in self._conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT OR IGNORE INTO schema_migrations VALUES (?, strftime('%s','now'))", (version,)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return fn(self._conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, fn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SQLiteKeyStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    async def put(self, record: KeyRecord) -> None:
        values = (
            record.id,
            record.key_hash,
            record.hint,
            record.name,
            record.user_id,
            record.team_id,
            record.role,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            orjson.dumps(list(record.allowed_models)).decode(),
            orjson.dumps(record.metadata).decode(),
        )
        await self._db.run(
            lambda c: c.execute(
                f"INSERT OR REPLACE INTO api_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", values
            )
        )

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self._db.run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        )
        return _row(row) if row else None

    async def list(self) -> list[KeyRecord]:
        rows = await self._db.run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        )
        return [_row(r) for r in rows]

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        def tx(c: sqlite3.Connection) -> tuple | None:  # type: ignore[type-arg]
            c.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
            return c.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()  # type: ignore[no-any-return]

        row = await self._db.run(tx)
        return _row(row) if row else None

    async def ping(self) -> None:
        await self._db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        self._db.close()
