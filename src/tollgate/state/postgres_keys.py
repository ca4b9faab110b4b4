"""PostgreSQL stores for keys, tenants (orgs, teams, users) and the audit log: what gateway replicas share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic

import asyncpg
import orjson

from tollgate.state.audit import AUDIT_COLUMNS, AUDIT_SCHEMA_0001, AuditQuery, AuditRecord, audit_from_row, audit_row
from tollgate.state.keys import KeyRecord
from tollgate.state.postgres import PostgresDatabase
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
    Team,
    User,
)
from tollgate.types import JSONValue

KEY_PG_MIGRATIONS: tuple[tuple[str, str], ...] = (
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
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        allowed_models TEXT NOT NULL DEFAULT '[]',
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    """,
    ),
    (
        "keys_0002_tenancy_limits_budget",
        """
    ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS org_id TEXT;
    ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS limits TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS budget TEXT;
    ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS rotated_at DOUBLE PRECISION;
    CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team_id);
    """,
    ),
)

# Same names as the SQLite lists, each backend with its own SQL; JSON is stored as text, like api_keys'.
TENANT_PG_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("tenants_0001_orgs_teams_users", TENANT_SCHEMA_0001.format(real="DOUBLE PRECISION", json="TEXT")),
)
AUDIT_PG_MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("audit_0001_audit_log", AUDIT_SCHEMA_0001.format(real="DOUBLE PRECISION", json="TEXT")),
)

_COLUMNS = (
    "id, key_hash, hint, name, user_id, team_id, role, created_at, expires_at, revoked_at, allowed_models, metadata,"
    " org_id, limits, budget, rotated_at"
)
_UPSERT = f"""
    INSERT INTO api_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    ON CONFLICT (id) DO UPDATE SET key_hash = excluded.key_hash, hint = excluded.hint, name = excluded.name,
        user_id = excluded.user_id, team_id = excluded.team_id, role = excluded.role,
        created_at = excluded.created_at, expires_at = excluded.expires_at, revoked_at = excluded.revoked_at,
        allowed_models = excluded.allowed_models, metadata = excluded.metadata, org_id = excluded.org_id,
        limits = excluded.limits, budget = excluded.budget, rotated_at = excluded.rotated_at
"""


def _record(r: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        id=r["id"],
        key_hash=r["key_hash"],
        hint=r["hint"],
        name=r["name"],
        user_id=r["user_id"],
        team_id=r["team_id"],
        role=r["role"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        allowed_models=tuple(orjson.loads(r["allowed_models"])),
        metadata=orjson.loads(r["metadata"]),
        org_id=r["org_id"],
        limits=LimitSpec.from_json(orjson.loads(r["limits"])),
        budget=BudgetSpec.from_json(orjson.loads(r["budget"])) if r["budget"] else None,
        rotated_at=r["rotated_at"],
    )


class PostgresKeyStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put(self, record: KeyRecord) -> None:
        pool = await self._db.pool()
        await pool.execute(
            _UPSERT,
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
            orjson.dumps(record.budget.to_json()).decode() if record.budget else None,
            record.rotated_at,
        )

    async def get(self, key_id: str) -> KeyRecord | None:
        pool = await self._db.pool()
        r = await pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return _record(r) if r is not None else None

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        pool = await self._db.pool()
        r = await pool.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash)
        return _record(r) if r is not None else None

    async def list(self, team_id: str | None = None) -> list[KeyRecord]:
        pool = await self._db.pool()
        if team_id is None:
            rows = await pool.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")
        else:
            rows = await pool.fetch(f"SELECT {_COLUMNS} FROM api_keys WHERE team_id = $1 ORDER BY created_at", team_id)
        return [_record(r) for r in rows]

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        pool = await self._db.pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", at, key_id)
            r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        return _record(r) if r is not None else None


def _json(value: JSONValue) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _unjson(value: str | None) -> JSONValue:
    return None if value is None else orjson.loads(value)


def _marks(n: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + n))


class PostgresEntityStore(Generic[E]):
    """One tenant entity kind in its table (the mapping is shared with SQLite: ``tenants.EntityTable``)."""

    def __init__(self, db: PostgresDatabase, table: EntityTable[E]) -> None:
        self._db = db
        self._t: EntityTable[E] = table
        cols = table.columns
        self._select = f"SELECT {', '.join(cols)} FROM {table.table}"
        self._insert = f"INSERT INTO {table.table} ({', '.join(cols)}) VALUES ({_marks(len(cols))})"
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=1) if i > 1)
        self._update = f"UPDATE {table.table} SET {sets} WHERE id = $1"

    def _encode(self, entity: E) -> list[JSONValue]:
        row = self._t.to_row(entity)
        return [_json(v) if c in self._t.json_columns else v for c, v in zip(self._t.columns, row, strict=True)]

    def _decode(self, row: asyncpg.Record) -> E:
        return self._t.from_row([_unjson(row[c]) if c in self._t.json_columns else row[c] for c in self._t.columns])

    async def _write(self, sql: str, entity: E) -> None:
        pool = await self._db.pool()
        try:
            await pool.execute(sql, *self._encode(entity))
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == f"{self._t.table}_pkey":
                raise DuplicateError(f"A {self._t.kind} with id '{entity.id}' already exists.", "id") from exc
            field_name = self._t.unique_field
            raise DuplicateError(f"A {self._t.kind} with this {field_name} already exists.", field_name) from exc

    async def create(self, entity: E) -> None:
        await self._write(self._insert, entity)

    async def update(self, entity: E) -> None:
        await self._write(self._update, entity)

    async def get(self, entity_id: str) -> E | None:
        row = await (await self._db.pool()).fetchrow(self._select + " WHERE id = $1", entity_id)
        return self._decode(row) if row is not None else None

    async def list(self, parent_id: str | None = None, include_deleted: bool = False) -> list[E]:
        clauses: list[str] = [] if include_deleted else ["deleted_at IS NULL"]
        args: list[str] = []
        if parent_id is not None and self._t.parent is not None:
            args.append(parent_id)
            clauses.append(f"{self._t.parent} = ${len(args)}")
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await (await self._db.pool()).fetch(self._select + where + " ORDER BY created_at", *args)
        return [self._decode(r) for r in rows]


class PostgresTenantStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self.orgs: PostgresEntityStore[Org] = PostgresEntityStore(db, ORG_TABLE)
        self.teams: PostgresEntityStore[Team] = PostgresEntityStore(db, TEAM_TABLE)
        self.users: PostgresEntityStore[User] = PostgresEntityStore(db, USER_TABLE)


class PostgresAuditStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def append(self, record: AuditRecord) -> None:
        row = audit_row(record)
        await (await self._db.pool()).execute(
            f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(10)})",
            *row[:7],
            _json(row[7]),
            _json(row[8]),
            row[9],
        )

    async def append_many(self, records: Sequence[AuditRecord]) -> None:
        rows = [(*row[:7], _json(row[7]), _json(row[8]), row[9]) for row in map(audit_row, records)]
        if not rows:
            return
        # executemany runs in one transaction: all or nothing.
        await (await self._db.pool()).executemany(
            f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(10)}) ON CONFLICT (id) DO NOTHING", rows
        )

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        where, args = query.where("$")
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit_log{where} ORDER BY at DESC LIMIT {int(query.limit)}"
        rows = await (await self._db.pool()).fetch(sql, *args)
        return [audit_from_row([*list(r.values())[:7], _unjson(r[7]), _unjson(r[8]), r[9]]) for r in rows]
