"""Console sessions: signed, tamper-evident, time-limited (clock injected), ended by sign-out on every replica."""

from __future__ import annotations

import pytest

from tollgate.config.sso import SsoConfig
from tollgate.core.sso import SESSION_PREFIX, Session, SingleSignOn
from tollgate.errors import AuthenticationError
from tollgate.state.audit import MemoryAuditStore

CONFIG = SsoConfig(
    enabled=True,
    issuer="https://idp.example.com",
    client_id="tollgate",
    redirect_url="https://gw.example.com/auth/sso/callback",
    allowed_domains=["example.com"],
    session_seconds=3600,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _issue(sso: SingleSignOn, clock: Clock, role: str = "viewer") -> str:
    # What finish() hands out after the provider round trip (that is tests/integration/test_sso.py's part).
    return sso.issue("a@example.com", "subject-1", role).token


async def test_a_session_authenticates_as_its_person_until_it_expires() -> None:
    clock = Clock()
    sso = SingleSignOn(CONFIG, "master", MemoryAuditStore(), clock)
    token = _issue(sso, clock)
    principal = await sso.authenticate(token, admin_api=True)
    assert (principal.key_id, principal.role, principal.name) == ("sso:a@example.com", "viewer", "a@example.com")
    clock.now += 3600
    with pytest.raises(AuthenticationError, match="expired"):
        await sso.authenticate(token, admin_api=True)


async def test_sessions_do_not_open_the_model_endpoints() -> None:
    clock = Clock()
    sso = SingleSignOn(CONFIG, "master", MemoryAuditStore(), clock)
    with pytest.raises(AuthenticationError, match="admin API only"):
        await sso.authenticate(_issue(sso, clock), admin_api=False)


async def test_another_master_key_or_an_edited_token_is_refused() -> None:
    clock = Clock()
    ours = SingleSignOn(CONFIG, "master", MemoryAuditStore(), clock)
    theirs = SingleSignOn(CONFIG, "another master", MemoryAuditStore(), clock)
    with pytest.raises(AuthenticationError, match="not valid"):
        await ours.authenticate(_issue(theirs, clock), admin_api=True)
    token = _issue(ours, clock)
    body, mac = token[len(SESSION_PREFIX) :].split(".")
    with pytest.raises(AuthenticationError, match="not valid"):
        await ours.authenticate(SESSION_PREFIX + body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac, True)


async def test_a_configured_secret_is_shared_by_replicas_with_different_master_keys() -> None:
    clock = Clock()
    config = CONFIG.model_copy(update={"session_secret": "shared-secret"})
    a = SingleSignOn(config, "master-a", MemoryAuditStore(), clock)
    b = SingleSignOn(config, "master-b", MemoryAuditStore(), clock)
    assert (await b.authenticate(_issue(a, clock), admin_api=True)).role == "viewer"


async def test_sign_out_on_one_replica_is_seen_by_another_through_the_audit_log() -> None:
    clock = Clock()
    audit = MemoryAuditStore()
    a = SingleSignOn(CONFIG, "master", audit, clock)
    b = SingleSignOn(CONFIG, "master", audit, clock)
    token = _issue(a, clock)
    await b.authenticate(token, admin_api=True)  # b now trusts it for a few seconds
    session = a.session_of(token)
    assert isinstance(session, Session)
    await a.sign_out(session, "req_1")
    with pytest.raises(AuthenticationError, match="signed out"):
        await a.authenticate(token, admin_api=True)
    await b.authenticate(token, admin_api=True)  # within its recheck interval: not yet
    clock.now += 6
    with pytest.raises(AuthenticationError, match="signed out"):
        await b.authenticate(token, admin_api=True)
