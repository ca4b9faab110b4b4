"""Open the storage named by a database URL (``memory://``, ``sqlite:///path``)."""

from __future__ import annotations

from typing import Protocol

from tollgate.state.audit import AuditStore
from tollgate.state.keys import KeyStore
from tollgate.state.ledger import LedgerStore
from tollgate.state.tenants import TenantStore


class Storage(Protocol):
    """Every persistent store of one backend, sharing its connection."""

    @property
    def keys(self) -> KeyStore: ...

    @property
    def tenants(self) -> TenantStore: ...

    @property
    def audit(self) -> AuditStore: ...

    @property
    def ledger(self) -> LedgerStore: ...

    async def ping(self) -> None:
        """Raise if the backend cannot be reached (readiness)."""
        ...

    async def close(self) -> None: ...


def open_storage(url: str, *, migrate: bool = True) -> Storage:
    """``migrate``: apply pending schema migrations (else refuse a schema that is behind; state/migrations.py)."""
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        from tollgate.state.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "sqlite":
        from tollgate.state.sqlite import SQLiteStorage

        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy URLs.
        path = rest[1:] if rest.startswith("/") else rest
        return SQLiteStorage(path or ":memory:", migrate=migrate)
    if scheme in ("postgresql", "postgres"):
        from tollgate.state.postgres import PostgresStorage

        # Connects lazily: the gateway starts while PostgreSQL is down (ledger rows are spooled meanwhile).
        return PostgresStorage(url, migrate=migrate)
    raise ValueError(
        f"unsupported database URL scheme {scheme!r} (supported: sqlite:///PATH, postgresql://..., memory://)"
    )
