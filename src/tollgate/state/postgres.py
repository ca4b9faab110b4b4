"""PostgreSQL backend (``postgresql://``): one asyncpg pool per process, named migrations, every store on it."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import asyncpg

log = logging.getLogger("tollgate.state")

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresDatabase:
    """A lazily opened pool: a gateway starts (and serves, spooling its ledger) while PostgreSQL is down,
    and the next use after it comes back opens the pool and applies pending migrations.

    The pool belongs to the event loop that first used it (asyncpg's rule)."""

    def __init__(
        self,
        dsn: str,
        migrations: Sequence[tuple[str, str]] = (),
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        migrate: bool = True,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r}: use lower-case letters, digits and '_'")
        self.dsn = dsn
        self.schema = schema
        self._migrations = tuple(migrations)
        self._apply = migrate  # False: refuse a schema that is behind (storage.migrate_on_start)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._lock: asyncio.Lock | None = None

    async def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is not None:
            return self._pool
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> asyncpg.Pool[asyncpg.Record]:
        if self.schema is not None:
            # The schema must exist before connections put it on their search path.
            conn = await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
        settings = {"search_path": self.schema} if self.schema is not None else None
        pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            server_settings=settings,
        )
        try:
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return pool

    async def _migrate(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        from tollgate.state.migrations import pg_apply

        async with pool.acquire() as conn:
            for version, _ in await pg_apply(conn, self._migrations, apply=self._apply):
                log.info("applied migration %s", version)

    async def drop_schema(self) -> None:
        """Drop this database's schema and everything in it (tests use one schema per run)."""
        if self.schema is None:
            raise ValueError("no schema to drop")
        await self.close()
        conn = await asyncpg.connect(self.dsn, timeout=self._connect_timeout)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class PostgresStorage:
    """``postgresql://``: keys, tenants, the audit log and the ledger, all in one PostgreSQL database."""

    def __init__(self, dsn: str, *, schema: str | None = None, migrate: bool = True) -> None:
        from tollgate.state.ledger_postgres import PostgresLedgerStore
        from tollgate.state.migrations import postgres_migrations
        from tollgate.state.postgres_keys import PostgresAuditStore, PostgresKeyStore, PostgresTenantStore

        self.db = PostgresDatabase(dsn, postgres_migrations(), schema=schema, migrate=migrate)
        self.keys = PostgresKeyStore(self.db)
        self.tenants = PostgresTenantStore(self.db)
        self.audit = PostgresAuditStore(self.db)
        self.ledger = PostgresLedgerStore(self.db)

    async def ping(self) -> None:
        pool = await self.db.pool()
        await pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self.db.close()
