"""The OpenID relying party on its own against the fake provider (real HTTP): key rotation and algorithm pinning."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest

from tests.fakes.oidc_server import CLIENT_ID, CLIENT_SECRET, FakeProvider, Grant, run_provider
from tollgate.config.sso import SsoConfig
from tollgate.core.oidc import OidcClient, OidcError


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[FakeProvider]:
    with run_provider() as provider:
        yield provider


def _client(idp: FakeProvider, clock: Clock, issuer: str | None = None) -> OidcClient:
    config = SsoConfig(
        enabled=True,
        issuer=issuer or idp.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_url="http://127.0.0.1:1/auth/sso/callback",
        allowed_domains=["example.com"],
    )
    return OidcClient(config, clock)


def _grant(idp: FakeProvider, nonce: str = "n-1") -> Grant:
    return Grant(CLIENT_ID, "http://127.0.0.1:1/auth/sso/callback", "unused", nonce, dict(idp.user))


async def test_a_rotated_signing_key_is_fetched_when_a_token_names_it(idp: FakeProvider) -> None:
    clock = Clock()
    client = _client(idp, clock)
    try:
        assert (await client.verify(idp.id_token(_grant(idp)), "n-1")).email == "alice@example.com"
        idp.rotate_key()
        # Right after a read, an unknown key id is refused without asking again (garbage cannot make the
        # gateway hammer the provider); a little later the key set is read anew and the new key is found.
        with pytest.raises(OidcError, match="does not publish"):
            await client.verify(idp.id_token(_grant(idp)), "n-1")
        clock.now += 11
        identity = await client.verify(idp.id_token(_grant(idp)), "n-1")
        assert identity.email_verified and identity.subject == "user-123"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("key", "alg"),
    [(CLIENT_SECRET * 2, "HS256"), ("", "none")],
)
async def test_symmetric_and_unsigned_tokens_are_refused(idp: FakeProvider, key: str, alg: str) -> None:
    """HS256 would verify with the client secret, which the provider shares; 'none' with nothing."""
    client = _client(idp, Clock())
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": CLIENT_ID, "sub": "x", "iat": now, "exp": now + 60, "nonce": "n-1"}
    token = jwt.encode(claims, key or None, algorithm=alg)
    try:
        with pytest.raises(OidcError, match="only RS256"):
            await client.verify(token, "n-1")
    finally:
        await client.close()


async def test_an_issuer_written_with_a_trailing_slash_is_the_same_issuer(idp: FakeProvider) -> None:
    client = _client(idp, Clock(), issuer=idp.issuer + "/")
    try:
        assert (await client.verify(idp.id_token(_grant(idp)), "n-1")).email == "alice@example.com"
    finally:
        await client.close()


async def test_an_issuer_with_no_discovery_document_is_a_clear_error(idp: FakeProvider) -> None:
    client = _client(idp, Clock(), issuer=idp.issuer + "/realms/none")
    try:
        with pytest.raises(OidcError, match=r"discovery document .* answered HTTP 404"):
            await client.verify(idp.id_token(_grant(idp)), "n-1")
    finally:
        await client.close()
