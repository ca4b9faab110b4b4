"""Authentication: master key, virtual keys, revocation and expiry, header forms, key → user → team → org."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from tollgate.context import Budget, Limit
from tollgate.core.auth import POSITIVE_TTL, Authenticator, key_from_headers
from tollgate.errors import AuthenticationError, ServiceUnavailableError
from tollgate.policies.model_access import model_allowed
from tollgate.state.keys import new_key_record, rotated
from tollgate.state.memory import MemoryKeyStore, MemoryTenantStore
from tollgate.state.sqlite import SQLiteStorage
from tollgate.state.tenants import BudgetSpec, LimitSpec, Org, Team, User


def test_key_from_headers_accepts_bearer_and_api_key_headers() -> None:
    assert key_from_headers({b"authorization": b"Bearer abc"}) == "abc"
    assert key_from_headers({b"authorization": b"bearer  abc "}) == "abc"
    assert key_from_headers({b"x-api-key": b"k"}) == "k"
    assert key_from_headers({b"api-key": b"k2"}) == "k2"
    assert key_from_headers({b"authorization": b"Basic xyz"}) is None
    assert key_from_headers({}) is None


async def test_master_and_virtual_keys() -> None:
    store = MemoryKeyStore()
    auth = Authenticator(store, "master-secret")
    assert (await auth.authenticate("master-secret")).is_admin
    key, record = new_key_record(name="svc", user_id="u1", team_id="t1")
    await store.put(record)
    principal = await auth.authenticate(key)
    assert (principal.key_id, principal.user_id, principal.team_id, principal.is_admin) == (
        record.id,
        "u1",
        "t1",
        False,
    )
    with pytest.raises(AuthenticationError, match="Missing"):
        await auth.authenticate(None)
    with pytest.raises(AuthenticationError, match="Invalid"):
        await auth.authenticate("tg-unknown")


async def test_revocation_takes_effect_after_invalidate() -> None:
    store = MemoryKeyStore()
    auth = Authenticator(store, "m")
    key, record = new_key_record(name="svc")
    await store.put(record)
    await auth.authenticate(key)
    revoked = await store.revoke(record.id, time.time())
    assert revoked is not None
    auth.invalidate(revoked)
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.authenticate(key)


async def test_expired_key_is_rejected() -> None:
    store = MemoryKeyStore()
    key, record = new_key_record(name="old", expires_at=time.time() - 1)
    await store.put(record)
    with pytest.raises(AuthenticationError, match="expired"):
        await Authenticator(store, "m").authenticate(key)


# --- key → user → team → org resolution ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _tree(tenants: MemoryTenantStore) -> None:
    await tenants.orgs.create(
        Org(
            id="acme",
            name="Acme",
            created_at=1.0,
            allowed_models=("openai/*", "anthropic/*"),
            limits=LimitSpec(rpm=1000),
            budget=BudgetSpec(5000.0),
            metadata={"billing": "eu", "cost_center": "org"},
        )
    )
    await tenants.teams.create(
        Team(
            id="pay",
            org_id="acme",
            name="Payments",
            created_at=2.0,
            allowed_models=("gpt-4o*", "claude-*"),
            budget=BudgetSpec(100.0, "daily"),
            metadata={"cost_center": "team"},
        )
    )
    await tenants.users.create(
        User(
            id="alice",
            team_id="pay",
            org_id="acme",
            name="Alice",
            role="team_admin",
            created_at=3.0,
            limits=LimitSpec(tpm=5000),
        )
    )


async def test_principal_collects_every_level() -> None:
    store, tenants = MemoryKeyStore(), MemoryTenantStore()
    await _tree(tenants)
    key, record = new_key_record(
        name="svc",
        user_id="alice",
        team_id="pay",
        org_id="acme",
        role="team_admin",
        allowed_models=("gpt-4o-mini", "claude-haiku-4-5", "gemini-*"),
        limits=LimitSpec(rpm=10, max_parallel=2),
        budget=BudgetSpec(5.0, "monthly"),
        metadata={"cost_center": "key"},
    )
    await store.put(record)
    p = await Authenticator(store, "m", tenants).authenticate(key)
    assert (p.key_id, p.user_id, p.team_id, p.org_id, p.role) == (record.id, "alice", "pay", "acme", "team_admin")
    assert p.limits == (
        Limit("key", record.id, rpm=10, max_parallel=2),
        Limit("user", "alice", tpm=5000),
        Limit("org", "acme", rpm=1000),
    )  # the team sets no limits, so it has no entry
    assert p.budgets == (
        Budget("key", record.id, 5.0, "monthly"),
        Budget("team", "pay", 100.0, "daily"),
        Budget("org", "acme", 5000.0, "monthly"),
    )
    assert p.metadata == {"billing": "eu", "cost_center": "key"}
    # Allowed only when the key, the team and the org all allow it (the user has no list).
    for model, allowed in (
        ("openai/gpt-4o-mini", True),  # key: exact bare name; team: gpt-4o*; org: openai/*
        ("anthropic/claude-haiku-4-5", True),
        ("gpt-4o-mini", False),  # the org allows only provider-qualified openai/* and anthropic/*
        ("openai/gpt-4o", False),  # the team allows it, the key does not
        ("gemini/gemini-2.5-flash", False),  # the key allows it, the team and org do not
        ("openai/claude-haiku-4-5", True),
    ):
        assert model_allowed(p.allowed_models, model) is allowed, model


async def test_deleted_team_user_or_org_refuses_the_key_with_the_reason() -> None:
    store, tenants = MemoryKeyStore(), MemoryTenantStore()
    await _tree(tenants)
    clock = Clock()
    auth = Authenticator(store, "m", tenants, clock)
    key, record = new_key_record(name="svc", team_id="pay", org_id="acme")
    await store.put(record)
    assert (await auth.authenticate(key)).team_id == "pay"
    team = await tenants.teams.get("pay")
    assert team is not None
    await tenants.teams.update(replace(team, deleted_at=clock.now))
    # Another process deleted the team: this one still serves the cached principal until the TTL passes...
    assert (await auth.authenticate(key)).team_id == "pay"
    clock.now += POSITIVE_TTL
    with pytest.raises(AuthenticationError, match="team 'pay' this API key belongs to was deleted"):
        await auth.authenticate(key)
    # ...and a deletion through this process's admin API invalidates at once.
    await tenants.teams.update(team)
    auth.invalidate_scope("team", "pay")
    assert (await auth.authenticate(key)).team_id == "pay"
    org = await tenants.orgs.get("acme")
    assert org is not None
    await tenants.orgs.update(replace(org, deleted_at=clock.now))
    auth.invalidate_scope("org", "acme")
    with pytest.raises(AuthenticationError, match=r"organization 'acme' .* was deleted"):
        await auth.authenticate(key)
    user_key, user_record = new_key_record(name="u", user_id="ghost", team_id="pay")
    await store.put(user_record)
    with pytest.raises(AuthenticationError, match=r"user 'ghost' .* does not exist"):
        await auth.authenticate(user_key)


async def test_a_key_never_outranks_its_user() -> None:
    store, tenants = MemoryKeyStore(), MemoryTenantStore()
    await _tree(tenants)
    auth = Authenticator(store, "m", tenants)
    key, record = new_key_record(name="svc", user_id="alice", team_id="pay", role="team_admin")
    await store.put(record)
    assert (await auth.authenticate(key)).role == "team_admin"
    alice = await tenants.users.get("alice")
    assert alice is not None
    await tenants.users.update(replace(alice, role="user"))
    auth.invalidate_scope("user", "alice")
    assert (await auth.authenticate(key)).role == "user"


async def test_expiry_uses_the_clock_and_rotation_retires_the_old_secret() -> None:
    store = MemoryKeyStore()
    clock = Clock()
    auth = Authenticator(store, "m", clock=clock)
    key, record = new_key_record(name="svc", expires_at=clock.now + 60)
    await store.put(record)
    assert (await auth.authenticate(key)).key_id == record.id
    new_key, after = rotated(record)
    await store.put(after)
    auth.invalidate(record)
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await auth.authenticate(key)
    assert (await auth.authenticate(new_key)).key_id == record.id
    clock.now += 61
    with pytest.raises(AuthenticationError, match="expired"):
        await auth.authenticate(new_key)


async def test_an_unreachable_key_store_serves_known_keys_from_their_last_state(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "keys.db"))
    clock = Clock()
    auth = Authenticator(storage.keys, "m", clock=clock)
    key, record = new_key_record(name="svc", limits=LimitSpec(rpm=7))
    await storage.keys.put(record)
    known = await auth.authenticate(key)
    other_key, other = new_key_record(name="never-seen")
    await storage.keys.put(other)
    await storage.close()  # from here on every read of the store fails, as with a database that is down
    clock.now += POSITIVE_TTL + 1
    assert await auth.authenticate(key) == known  # limits and budgets stay enforced from the last state
    assert auth.store_errors == 1
    with pytest.raises(ServiceUnavailableError) as refused:  # an unknown key cannot be checked: fail closed
        await auth.authenticate(other_key)
    assert refused.value.status == 503 and refused.value.headers["retry-after"] == "1"
    auth.invalidate(record)  # a revocation heard over the bus drops the last state: the key is refused too
    with pytest.raises(ServiceUnavailableError):
        await auth.authenticate(key)
