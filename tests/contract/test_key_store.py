"""The key, tenant and audit store contract, against memory, SQLite and the real PostgreSQL alike."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest

from tollgate.state.audit import AuditQuery, AuditStore, new_audit_record
from tollgate.state.factory import open_storage
from tollgate.state.keys import KeyStore, hash_key, new_key_record, rotated
from tollgate.state.postgres import PostgresDatabase
from tollgate.state.postgres_keys import (
    AUDIT_PG_MIGRATIONS,
    KEY_PG_MIGRATIONS,
    TENANT_PG_MIGRATIONS,
    PostgresAuditStore,
    PostgresKeyStore,
    PostgresTenantStore,
)
from tollgate.state.tenants import BudgetSpec, DuplicateError, LimitSpec, Org, Team, TenantStore, User

POSTGRES_DSN = os.environ.get("TOLLGATE_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")


@dataclass
class Stores:
    keys: KeyStore
    tenants: TenantStore
    audit: AuditStore


async def _postgres_problem() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "postgres":
        problem = await _postgres_problem()
        if problem is not None:
            message = f"PostgreSQL at {POSTGRES_DSN} does not answer ({problem}); start it to run this backend"
            if os.environ.get("CI"):
                pytest.fail(message + " (CI is set, so this cannot be skipped)")
            pytest.skip(message)
        # A schema of this test alone, dropped afterwards: runs never see each other's rows.
        db = PostgresDatabase(
            POSTGRES_DSN,
            KEY_PG_MIGRATIONS + TENANT_PG_MIGRATIONS + AUDIT_PG_MIGRATIONS,
            schema=f"tg_test_{uuid.uuid4().hex[:16]}",
        )
        try:
            yield Stores(PostgresKeyStore(db), PostgresTenantStore(db), PostgresAuditStore(db))
        finally:
            await db.drop_schema()
        return
    storage = open_storage("memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/c.db")
    try:
        yield Stores(storage.keys, storage.tenants, storage.audit)
    finally:
        await storage.close()


# --- keys ---------------------------------------------------------------------------------------------


async def test_key_round_trip_with_every_field(stores: Stores) -> None:
    key, record = new_key_record(
        name="svc",
        user_id="u1",
        team_id="t1",
        org_id="o1",
        role="team_admin",
        expires_at=time.time() + 3600,
        allowed_models=("gpt-4o*", "anthropic/*"),
        metadata={"cost_center": "42", "nested": {"a": [1, 2]}},
        limits=LimitSpec(rpm=60, tpm=10_000, max_parallel=2),
        budget=BudgetSpec(12.5, "weekly"),
    )
    await stores.keys.put(record)
    assert await stores.keys.get_by_hash(hash_key(key)) == record
    assert await stores.keys.get(record.id) == record
    assert await stores.keys.get_by_hash(hash_key(key + "x")) is None
    assert await stores.keys.get("key_missing") is None


async def test_list_filters_by_team_and_keeps_creation_order(stores: Stores) -> None:
    records = []
    for i, team in enumerate(("a", "b", "a")):
        _, rec = new_key_record(name=f"k{i}", team_id=team)
        rec = replace(rec, created_at=1000.0 + i)
        records.append(rec)
        await stores.keys.put(rec)
    assert [r.id for r in await stores.keys.list()] == [r.id for r in records]
    assert [r.id for r in await stores.keys.list("a")] == [records[0].id, records[2].id]
    assert await stores.keys.list("nobody") == []


async def test_revoke_is_idempotent_and_keeps_the_first_time(stores: Stores) -> None:
    _, record = new_key_record(name="svc")
    await stores.keys.put(record)
    first = await stores.keys.revoke(record.id, 1000.0)
    again = await stores.keys.revoke(record.id, 2000.0)
    assert first is not None and again is not None
    assert first.revoked_at == again.revoked_at == 1000.0 and not again.is_active()
    assert await stores.keys.revoke("key_missing", 1.0) is None


async def test_rotation_replaces_the_secret_in_place(stores: Stores) -> None:
    old_key, record = new_key_record(name="svc", team_id="t", limits=LimitSpec(rpm=5))
    await stores.keys.put(record)
    new_key, after = rotated(record, at=1234.0)
    await stores.keys.put(after)
    assert await stores.keys.get_by_hash(hash_key(old_key)) is None
    got = await stores.keys.get_by_hash(hash_key(new_key))
    assert got == after and got.id == record.id and got.limits == record.limits and got.rotated_at == 1234.0
    assert [r.id for r in await stores.keys.list()] == [record.id]


# --- tenants ------------------------------------------------------------------------------------------


def _org(org_id: str, name: str) -> Org:
    return Org(id=org_id, name=name, created_at=time.time())


async def test_entities_round_trip(stores: Stores) -> None:
    org = Org(
        id="acme",
        name="Acme",
        created_at=100.0,
        allowed_models=("openai/*",),
        limits=LimitSpec(rpm=1000),
        budget=BudgetSpec(5000.0, "monthly"),
        metadata={"billing": "eu"},
    )
    team = Team(id="pay", org_id="acme", name="Payments", created_at=101.0, budget=BudgetSpec(100.0, "daily"))
    user = User(
        id="alice",
        team_id="pay",
        org_id="acme",
        name="Alice",
        email="alice@example.com",
        role="team_admin",
        created_at=102.0,
        limits=LimitSpec(tpm=5000, input_tpm=4000, output_tpm=1000),
    )
    await stores.tenants.orgs.create(org)
    await stores.tenants.teams.create(team)
    await stores.tenants.users.create(user)
    assert await stores.tenants.orgs.get("acme") == org
    assert await stores.tenants.teams.get("pay") == team
    assert await stores.tenants.users.get("alice") == user
    assert await stores.tenants.users.get("nobody") is None


async def test_duplicates_are_refused_with_the_field(stores: Stores) -> None:
    orgs, teams, users = stores.tenants.orgs, stores.tenants.teams, stores.tenants.users
    await orgs.create(_org("o1", "Acme"))
    with pytest.raises(DuplicateError) as dup_id:
        await orgs.create(_org("o1", "Other"))
    assert dup_id.value.field_name == "id"
    with pytest.raises(DuplicateError) as dup_name:
        await orgs.create(_org("o2", "ACME"))  # names are unique case-insensitively
    assert dup_name.value.field_name == "name"
    await orgs.create(_org("o3", "Globex"))
    await teams.create(Team(id="t1", org_id="o1", name="ml", created_at=1.0))
    await teams.create(Team(id="t2", org_id="o3", name="ml", created_at=2.0))  # another org: fine
    with pytest.raises(DuplicateError):
        await teams.create(Team(id="t3", org_id="o1", name="ML", created_at=3.0))
    await users.create(User(id="u1", team_id="t1", org_id="o1", name="a", email="a@x.io", created_at=1.0))
    await users.create(User(id="u2", team_id="t1", org_id="o1", name="no email", created_at=2.0))
    await users.create(User(id="u3", team_id="t1", org_id="o1", name="no email", created_at=3.0))
    with pytest.raises(DuplicateError) as dup_email:
        await users.create(User(id="u4", team_id="t2", org_id="o3", name="b", email="A@x.io", created_at=4.0))
    assert dup_email.value.field_name == "email"
    # An update into a taken name is refused too.
    org3 = await orgs.get("o3")
    assert org3 is not None
    with pytest.raises(DuplicateError):
        await orgs.update(replace(org3, name="acme"))


async def test_soft_delete_hides_from_lists_and_frees_the_name(stores: Stores) -> None:
    orgs, teams = stores.tenants.orgs, stores.tenants.teams
    await orgs.create(_org("o1", "Acme"))
    await orgs.create(_org("o2", "Globex"))
    await teams.create(Team(id="t1", org_id="o1", name="ml", created_at=1.0))
    await teams.create(Team(id="t2", org_id="o1", name="web", created_at=2.0))
    await teams.create(Team(id="t3", org_id="o2", name="ml", created_at=3.0))
    t1 = await teams.get("t1")
    assert t1 is not None
    await teams.update(replace(t1, deleted_at=50.0))
    deleted = await teams.get("t1")
    assert deleted is not None and deleted.deleted and deleted.deleted_at == 50.0
    assert [t.id for t in await teams.list("o1")] == ["t2"]
    assert [t.id for t in await teams.list("o1", include_deleted=True)] == ["t1", "t2"]
    assert [t.id for t in await teams.list()] == ["t2", "t3"]
    await teams.create(Team(id="t4", org_id="o1", name="ml", created_at=4.0))  # the name is free again


async def test_update_replaces_settings(stores: Stores) -> None:
    await stores.tenants.orgs.create(_org("o1", "Acme"))
    await stores.tenants.teams.create(Team(id="t1", org_id="o1", name="ml", created_at=1.0))
    team = await stores.tenants.teams.get("t1")
    assert team is not None
    changed = replace(team, limits=LimitSpec(rpm=7), budget=BudgetSpec(3.0, "total"), allowed_models=("x*",))
    await stores.tenants.teams.update(changed)
    assert await stores.tenants.teams.get("t1") == changed
    cleared = replace(changed, limits=LimitSpec(), budget=None, allowed_models=())
    await stores.tenants.teams.update(cleared)
    assert await stores.tenants.teams.get("t1") == cleared


# --- audit --------------------------------------------------------------------------------------------


async def test_audit_query_filters_and_orders_newest_first(stores: Stores) -> None:
    made = []
    for i, (actor, target) in enumerate((("k1", "t1"), ("k2", "t1"), ("k1", "key_9"), ("k1", "t2"))):
        rec = new_audit_record(
            actor_key_id=actor,
            actor_role="admin",
            action="team.update",
            target_type="team",
            target_id=target,
            before={"limits": {"rpm": i}},
            after={"limits": {"rpm": i + 1}, "tags": ["a", {"b": None}]},
            request_id=f"req_{i}",
            at=1000.0 + i,
        )
        made.append(rec)
        await stores.audit.append(rec)
    assert await stores.audit.query(AuditQuery()) == made[::-1]
    assert [r.id for r in await stores.audit.query(AuditQuery(actor="k1"))] == [made[3].id, made[2].id, made[0].id]
    assert [r.id for r in await stores.audit.query(AuditQuery(target="t1"))] == [made[1].id, made[0].id]
    window = await stores.audit.query(AuditQuery(since=1001.0, until=1003.0))
    assert [r.id for r in window] == [made[2].id, made[1].id]
    assert [r.id for r in await stores.audit.query(AuditQuery(actor="k1", since=1001.0, limit=1))] == [made[3].id]
    assert await stores.audit.query(AuditQuery(actor="nobody")) == []
