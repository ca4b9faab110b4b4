"""Key stores (memory and SQLite) behave the same; keys are stored hashed, never in clear."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tollgate.state.factory import Storage, open_storage
from tollgate.state.keys import KeyStore, hash_key, new_key_record
from tollgate.state.sqlite import KEY_MIGRATIONS


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/k.db"
    s = open_storage(url)
    yield s
    await s.close()


async def test_put_get_list_revoke(storage: Storage) -> None:
    store: KeyStore = storage.keys
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
    await storage.ping()


async def test_sqlite_never_stores_the_clear_key_and_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    storage = open_storage(url)
    key, record = new_key_record(name="svc")
    await storage.keys.put(record)
    await storage.close()
    raw = (
        (tmp_path / "k.db").read_bytes() + (tmp_path / "k.db-wal").read_bytes()
        if (tmp_path / "k.db-wal").exists()
        else (tmp_path / "k.db").read_bytes()
    )
    assert key.encode() not in raw
    reopened = open_storage(url)  # migrations are idempotent
    assert await reopened.keys.get_by_hash(hash_key(key)) == record
    await reopened.close()
    rows = sqlite3.connect(tmp_path / "k.db").execute("SELECT version FROM schema_migrations ORDER BY rowid")
    versions = [v for (v,) in rows if v.startswith(("keys_", "tenants_", "audit_"))]
    assert versions == [
        "keys_0001_api_keys",
        "keys_0002_tenancy_limits_budget",
        "tenants_0001_orgs_teams_users",
        "audit_0001_audit_log",
    ]


async def test_a_database_made_before_tenancy_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file holding only keys_0001 (the released schema) gains the new columns and keeps its keys."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at REAL)")
    conn.executescript(KEY_MIGRATIONS[0][1])
    conn.execute("INSERT INTO schema_migrations VALUES ('keys_0001_api_keys', 0)")
    conn.execute(
        "INSERT INTO api_keys (id, key_hash, hint, name, role, created_at)"
        " VALUES ('key_old', ?, 'tg-x…y', 'old', 'user', 1)",
        (hash_key("tg-old"),),
    )
    conn.commit()
    conn.close()
    storage = open_storage(f"sqlite:///{path}")
    old = await storage.keys.get_by_hash(hash_key("tg-old"))
    assert old is not None and old.id == "key_old" and old.org_id is None and old.budget is None
    assert not old.limits.is_set()
    await storage.close()


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_storage("mongodb://x")
