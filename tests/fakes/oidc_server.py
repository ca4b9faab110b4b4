"""A fake OpenID Connect provider speaking the real wire format, for the admin UI's single sign-on tests.

    GET  /.well-known/openid-configuration   discovery (issuer = this server's base URL)
    GET  /jwks                               the public half of a fresh RSA key (RS256, with a kid)
    GET  /authorize                          no login form: checks the request (client, redirect URI, PKCE
                                             S256, state, nonce) and redirects straight back with a code
    POST /token                              authorization_code grant: checks the code (once), the redirect
                                             URI, client authentication (basic or post) and the PKCE verifier,
                                             and answers an RS256-signed ID token for ``user``

Tests pick who signs in by setting ``provider.user``, which client authentication /token accepts by
``provider.auth_methods``, and how the ID token is spoiled by ``provider.tamper``:
``bad_signature`` (signed by another key under the published kid), ``wrong_audience``, ``wrong_issuer``,
``expired``, ``wrong_nonce``; ``provider.deny`` makes /authorize answer ``error=access_denied``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.harness import FakeServer, serve

CLIENT_ID = "tollgate-console"
CLIENT_SECRET = "fake-client-secret"
KID = "fake-key-1"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    user: dict[str, Any]


@dataclass
class FakeProvider:
    redirect_uris: list[str] = field(default_factory=list)
    user: dict[str, Any] = field(
        default_factory=lambda: {
            "sub": "user-123",
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Example",
            "groups": [],
        }
    )
    tamper: str | None = None
    deny: bool = False
    # How clients may authenticate at /token (what discovery announces, and all that /token accepts).
    auth_methods: list[str] = field(default_factory=lambda: ["client_secret_basic", "client_secret_post"])
    key: rsa.RSAPrivateKey = field(default_factory=_key)
    kid: str = KID
    other_key: rsa.RSAPrivateKey = field(default_factory=_key)
    grants: dict[str, Grant] = field(default_factory=dict)
    issued: int = 0  # ID tokens handed out
    server: FakeServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def reset(self) -> None:
        self.tamper, self.deny = None, False
        self.user = FakeProvider().user
        self.auth_methods = ["client_secret_basic", "client_secret_post"]

    # ---- routes -----------------------------------------------------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        base = self.issuer
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": base + "/authorize",
                "token_endpoint": base + "/token",
                "jwks_uri": base + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": self.auth_methods,
                "scopes_supported": ["openid", "email", "profile", "groups"],
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != CLIENT_ID or redirect_uri not in self.redirect_uris:
            return web.json_response({"error": "invalid_request", "error_description": "unknown client"}, status=400)
        state = q.get("state", "")
        if self.deny:
            refusal = {"error": "access_denied", "error_description": "The user said no", "state": state}
            return _redirect(redirect_uri, refusal)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _redirect(redirect_uri, {"error": "invalid_request", "state": state})
        if "openid" not in q.get("scope", "").split() or not state or not q.get("nonce"):
            return _redirect(redirect_uri, {"error": "invalid_request", "state": state})
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(CLIENT_ID, redirect_uri, q["code_challenge"], q["nonce"], dict(self.user))
        return _redirect(redirect_uri, {"code": code, "state": state})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        method = "client_secret_post"
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            method = "client_secret_basic"
            client_id, _, secret = (unquote_plus(p) for p in base64.b64decode(auth[6:]).decode().partition(":"))
        if client_id != CLIENT_ID or secret != CLIENT_SECRET or method not in self.auth_methods:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self.grants.pop(str(form.get("code", "")), None)  # a code is good once
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant", "error_description": "unknown code"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != grant.challenge:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE failed"}, status=400)
        self.issued += 1
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant),
            }
        )

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.user,
        }
        key = self.key
        if self.tamper == "bad_signature":
            key = self.other_key
        elif self.tamper == "wrong_audience":
            claims["aud"] = "some-other-app"
        elif self.tamper == "wrong_issuer":
            claims["iss"] = "https://evil.example"
        elif self.tamper == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif self.tamper == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-you-sent"
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def rotate_key(self) -> None:
        """Publish a new signing key under a new key id (the old one is gone, as after a rotation)."""
        self.key, self.kid = _key(), f"fake-key-{secrets.token_hex(4)}"


def _redirect(uri: str, params: dict[str, str]) -> web.Response:
    raise web.HTTPFound(uri + ("&" if "?" in uri else "?") + urlencode(params))


@contextmanager
def run_provider() -> Iterator[FakeProvider]:
    provider = FakeProvider()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", provider.discovery)
    app.router.add_get("/jwks", provider.jwks)
    app.router.add_get("/authorize", provider.authorize)
    app.router.add_post("/token", provider.token)
    with serve(app) as server:
        provider.server = server
        yield provider
