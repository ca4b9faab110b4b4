"""SQLite backend (``sqlite:///path``): the embedded default. Calls run in a worker thread, serialised."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from tollgate.state.audit import AUDIT_COLUMNS, AUDIT_SCHEMA_0001, AuditQuery, AuditRecord, audit_from_row, audit_row
from tollgate.state.keys import KeyRecord
from tollgate.state.tenants import (
    ORG_TABLE,
    TEAM_TABLE,
    TENANT_SCHEMA_0001,
    USER_TABLE,
    BudgetSpec,
    DuplicateError,
    E,
    EntityTable,
    LimitSpec,
    Org,
    RowValue,
    Team,
    User,
)
from tollgate.types import JSONValue

T = TypeVar("T")

# Named, append-only: a migration is never edited once released; each store module owns its list and
# the database applies every list it is given, once per name, in order.
KEY_MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "keys_0001_api_keys",
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
    ),
    (
        "keys_0002_tenancy_limits_budget",
        """
    ALTER TABLE api_keys ADD COLUMN org_id TEXT;
    ALTER TABLE api_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE api_keys ADD COLUMN budget TEXT;
    ALTER TABLE api_keys ADD COLUMN rotated_at REAL;
    CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team_id)
    """,
    ),
)
TENANT_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("tenants_0001_orgs_teams_users", TENANT_SCHEMA_0001.format(real="REAL", json="TEXT")),
)
AUDIT_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("audit_0001_audit_log", AUDIT_SCHEMA_0001.format(real="REAL", json="TEXT")),
)

_COLUMNS = (
    "id, key_hash, hint, name, user_id, team_id, role, created_at, expires_at, revoked_at, allowed_models, metadata,"
    " org_id, limits, budget, rotated_at"
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
        org_id=row[12],
        limits=LimitSpec.from_json(orjson.loads(row[13])),
        budget=BudgetSpec.from_json(orjson.loads(row[14])) if row[14] else None,
        rotated_at=row[15],
    )


def _json_text(value: JSONValue) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class SQLiteDatabase:
    """One connection per process in WAL mode; all statements go through one lock on a worker thread."""

    def __init__(self, path: str, migrations: Sequence[tuple[str, str]] = (), *, migrate: bool = True) -> None:
        from tollgate.state.migrations import sqlite_apply  # it imports this module

        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                # Versioned steps (state/migrations.py); without ``migrate``, a schema that is behind is refused.
                sqlite_apply(self._conn, migrations, apply=migrate)
            except BaseException:
                self._conn.close()
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
            record.org_id,
            orjson.dumps(record.limits.to_json()).decode(),
            _json_text(record.budget.to_json()) if record.budget else None,
            record.rotated_at,
        )
        # REPLACE on the id: a rotation swaps the hash in place, so the old key stops matching at once.
        await self._db.run(
            lambda c: c.execute(f"INSERT OR REPLACE INTO api_keys ({_COLUMNS}) VALUES ({_marks(16)})", values)
        )

    async def get(self, key_id: str) -> KeyRecord | None:
        row = await self._db.run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        )
        return _row(row) if row else None

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        row = await self._db.run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
        )
        return _row(row) if row else None

    async def list(self, team_id: str | None = None) -> list[KeyRecord]:
        if team_id is None:
            sql, args = f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at", tuple[str, ...]()
        else:
            sql, args = f"SELECT {_COLUMNS} FROM api_keys WHERE team_id = ? ORDER BY created_at", (team_id,)
        rows = await self._db.run(lambda c: c.execute(sql, args).fetchall())
        return [_row(r) for r in rows]

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        def tx(c: sqlite3.Connection) -> tuple | None:  # type: ignore[type-arg]
            c.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, key_id))
            return c.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()  # type: ignore[no-any-return]

        row = await self._db.run(tx)
        return _row(row) if row else None


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteEntityStore(Generic[E]):
    """One tenant entity kind in its table; JSON columns are stored as text."""

    def __init__(self, db: SQLiteDatabase, table: EntityTable[E]) -> None:
        self._db = db
        self._t: EntityTable[E] = table
        self._select = f"SELECT {', '.join(table.columns)} FROM {table.table}"

    def _encode(self, entity: E) -> tuple[RowValue, ...]:
        row = self._t.to_row(entity)
        return tuple(
            _json_text(v) if col in self._t.json_columns else v for col, v in zip(self._t.columns, row, strict=True)
        )

    def _decode(self, row: tuple[RowValue, ...]) -> E:
        values = [
            orjson.loads(v) if col in self._t.json_columns and isinstance(v, str) else v
            for col, v in zip(self._t.columns, row, strict=True)
        ]
        return self._t.from_row(values)

    async def _write(self, sql: str, entity: E) -> None:
        values = self._encode(entity)
        try:
            await self._db.run(lambda c: c.execute(sql, values))
        except sqlite3.IntegrityError as exc:
            if f"{self._t.table}.id" in str(exc):
                raise DuplicateError(f"A {self._t.kind} with id '{entity.id}' already exists.", "id") from exc
            field_name = self._t.unique_field
            raise DuplicateError(f"A {self._t.kind} with this {field_name} already exists.", field_name) from exc

    async def create(self, entity: E) -> None:
        cols = self._t.columns
        await self._write(f"INSERT INTO {self._t.table} ({', '.join(cols)}) VALUES ({_marks(len(cols))})", entity)

    async def update(self, entity: E) -> None:
        # Numbered parameters let the row bind in column order with the id (column 1) reused in the WHERE.
        sets = ", ".join(f"{c} = ?{i}" for i, c in enumerate(self._t.columns, start=1) if i > 1)
        await self._write(f"UPDATE {self._t.table} SET {sets} WHERE id = ?1", entity)

    async def get(self, entity_id: str) -> E | None:
        row = await self._db.run(lambda c: c.execute(self._select + " WHERE id = ?", (entity_id,)).fetchone())
        return self._decode(row) if row else None

    async def list(self, parent_id: str | None = None, include_deleted: bool = False) -> list[E]:
        clauses: list[str] = [] if include_deleted else ["deleted_at IS NULL"]
        args: list[str] = []
        if parent_id is not None and self._t.parent is not None:
            clauses.append(f"{self._t.parent} = ?")
            args.append(parent_id)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._db.run(lambda c: c.execute(self._select + where + " ORDER BY created_at", args).fetchall())
        return [self._decode(r) for r in rows]


class SQLiteTenantStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self.orgs: SQLiteEntityStore[Org] = SQLiteEntityStore(db, ORG_TABLE)
        self.teams: SQLiteEntityStore[Team] = SQLiteEntityStore(db, TEAM_TABLE)
        self.users: SQLiteEntityStore[User] = SQLiteEntityStore(db, USER_TABLE)


class SQLiteAuditStore:
    def __init__(self, db: SQLiteDatabase) -> None:
        self._db = db

    @staticmethod
    def _values(record: AuditRecord) -> tuple[JSONValue, ...]:
        row = audit_row(record)
        return (*row[:7], _json_text(row[7]), _json_text(row[8]), row[9])

    async def append(self, record: AuditRecord) -> None:
        values = self._values(record)
        await self._db.run(
            lambda c: c.execute(f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(10)})", values)
        )

    async def append_many(self, records: Sequence[AuditRecord]) -> None:
        rows = [self._values(r) for r in records]
        if not rows:
            return

        def tx(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(f"INSERT OR IGNORE INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(10)})", rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await self._db.run(tx)

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        where, args = query.where("?")
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit_log{where} ORDER BY at DESC LIMIT {int(query.limit)}"
        rows = await self._db.run(lambda c: c.execute(sql, args).fetchall())
        return [
            audit_from_row([*r[:7], orjson.loads(r[7]) if r[7] else None, orjson.loads(r[8]) if r[8] else None, r[9]])
            for r in rows
        ]


class SQLiteStorage:
    """The embedded default: one SQLite file holds every store."""

    def __init__(self, path: str, *, migrate: bool = True) -> None:
        from tollgate.state.ledger_sqlite import SQLiteLedgerStore  # it imports this module
        from tollgate.state.migrations import sqlite_migrations

        self.db = SQLiteDatabase(path, sqlite_migrations(), migrate=migrate)
        self.keys = SQLiteKeyStore(self.db)
        self.tenants = SQLiteTenantStore(self.db)
        self.audit = SQLiteAuditStore(self.db)
        self.ledger = SQLiteLedgerStore(self.db)

    async def ping(self) -> None:
        await self.db.run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        self.db.close()
