"""Key stores (memory and SQLite) behave the same; keys are stored hashed, never in clear."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tollgate.state.factory import ManagedKeyStore, open_key_store
from tollgate.state.keys import hash_key, new_key_record


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ManagedKeyStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/k.db"
    s = open_key_store(url)
    yield s
    await s.close()


async def test_put_get_list_revoke(store: ManagedKeyStore) -> None:
    key, record = new_key_record(
        name="svc", user_id="u", team_id="t", allowed_models=("gpt-4o*",), metadata={"cost_center": "42"}
    )
    await store.put(record)
    got = await store.get_by_hash(hash_key(key))
    assert got == record
    assert await store.get_by_hash(hash_key(key + "x")) is None
    assert [r.id for r in await store.list()] == [record.id]
    revoked = await store.revoke(record.id, time.time())
    assert revoked is not None and revoked.revoked_at is not None and not revoked.is_active()
    assert await store.revoke("key_missing", time.time()) is None
    await store.ping()


async def test_sqlite_never_stores_the_clear_key_and_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    store = open_key_store(url)
    key, record = new_key_record(name="svc")
    await store.put(record)
    await store.close()
    raw = (
        (tmp_path / "k.db").read_bytes() + (tmp_path / "k.db-wal").read_bytes()
        if (tmp_path / "k.db-wal").exists()
        else (tmp_path / "k.db").read_bytes()
    )
    assert key.encode() not in raw
    reopened = open_key_store(url)  # migrations are idempotent
    assert await reopened.get_by_hash(hash_key(key)) == record
    await reopened.close()
    versions = sqlite3.connect(tmp_path / "k.db").execute("SELECT version FROM schema_migrations").fetchall()
    assert versions == [(1,)]


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_key_store("mongodb://x")
