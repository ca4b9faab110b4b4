"""Choose state backends by URL scheme."""

from __future__ import annotations

from typing import Protocol

from tollgate.state.keys import KeyStore


class ManagedKeyStore(KeyStore, Protocol):
    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def open_key_store(url: str) -> ManagedKeyStore:
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        from tollgate.state.memory import MemoryKeyStore

        return MemoryKeyStore()
    if scheme == "sqlite":
        from tollgate.state.sqlite import SQLiteDatabase, SQLiteKeyStore

        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy URLs.
        path = rest[1:] if rest.startswith("/") else rest
        return SQLiteKeyStore(SQLiteDatabase(path or ":memory:"))
    raise ValueError(f"unsupported database URL scheme {scheme!r} (supported: sqlite:///PATH, memory://)")
