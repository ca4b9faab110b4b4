"""Authentication: master key, virtual keys, revocation and expiry, header forms."""

from __future__ import annotations

import time

import pytest

from tollgate.core.auth import Authenticator, key_from_headers
from tollgate.errors import AuthenticationError
from tollgate.state.keys import new_key_record
from tollgate.state.memory import MemoryKeyStore


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
