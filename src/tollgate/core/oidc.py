"""An OpenID Connect relying party: discovery, the authorization-code flow with PKCE, and ID token verification.

Not on the hot path: only the admin UI's single sign-on uses it, a few times per person per day. The ID
token's signature is checked against the provider's published keys (JWKS) with PyJWT; only asymmetric
algorithms are accepted, so neither ``none`` nor a token signed with a guessable shared secret can pass.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import orjson

from tollgate.config.sso import SsoConfig
from tollgate.types import JSONObject, JSONValue

log = logging.getLogger("tollgate.sso")

# Asymmetric signatures only: HS* would verify with the client secret (shared with the provider), none with nothing.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# Clocks of the provider and the gateway may differ this much (seconds) when exp/iat/nbf are checked.
LEEWAY = 60
_DISCOVERY_TTL = 3600.0
# A token signed with a key id the cached JWKS lacks makes the keys be re-read (the provider rotated them),
# at most this often, so garbage tokens cannot make the gateway hammer the provider.
_JWKS_REFRESH_MIN = 10.0
_TIMEOUT = aiohttp.ClientTimeout(total=10.0)


class OidcError(Exception):
    """A sign-in the gateway refuses: ``message`` is shown to the person signing in; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in, from a verified ID token."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Challenge:
    """One sign-in attempt's secrets, kept by the browser (signed) until the provider sends it back."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Challenge:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    def __init__(self, config: SsoConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._issuer = str(config.issuer).rstrip("/")
        self._client_id = str(config.client_id)
        self._now = clock
        self._session: aiohttp.ClientSession | None = None
        self._discovery: JSONObject | None = None
        self._discovered_at = float("-inf")
        self._keys: list[JSONObject] = []
        self._keys_read_at = float("-inf")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authorization_url(self, challenge: Challenge) -> str:
        doc = await self._metadata()
        params = {
            "response_type": "code",
            "client_id": self._client_id,
            "redirect_uri": str(self._config.redirect_url),
            "scope": " ".join(self._config.scopes),
            "state": challenge.state,
            "nonce": challenge.nonce,
            "code_challenge": challenge.code_challenge,
            "code_challenge_method": "S256",
        }
        endpoint = _text(doc, "authorization_endpoint")
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    async def exchange(self, code: str, challenge: Challenge) -> str:
        """Redeem the authorization code at the token endpoint; returns the (not yet verified) ID token."""
        doc = await self._metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": str(self._config.redirect_url),
            "code_verifier": challenge.verifier,
        }
        headers = {"accept": "application/json"}
        secret = self._config.client_secret
        methods = doc.get("token_endpoint_auth_methods_supported")
        if secret and (not isinstance(methods, list) or "client_secret_basic" in methods):
            # client_secret_basic is the default the spec gives a provider that names none; RFC 6749 2.3.1
            # form-encodes id and secret before they are joined.
            pair = f"{quote_plus(self._client_id)}:{quote_plus(secret)}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = self._client_id
            if secret:
                form["client_secret"] = secret
        try:
            async with self._http().post(_text(doc, "token_endpoint"), data=form, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"The identity provider's token endpoint failed: {exc!r}."
            raise OidcError("provider_unreachable", message) from None
        payload = _json_object(body)
        if status != 200:
            what = payload.get("error_description") or payload.get("error") or f"HTTP {status}"
            raise OidcError("token_exchange_failed", f"The identity provider did not accept the sign-in code: {what}.")
        token = payload.get("id_token")
        if not isinstance(token, str) or not token:
            raise OidcError("no_id_token", "The identity provider returned no ID token (is 'openid' in sso.scopes?).")
        return token

    async def verify(self, id_token: str, nonce: str) -> Identity:
        """Check the ID token's signature, issuer, audience, expiry and nonce; return who it names."""
        import jwt  # the sso extra; only imported once single sign-on is on

        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("malformed_token", "The identity provider's ID token is not a valid JWT.") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OidcError(
                "bad_algorithm",
                f"The ID token is signed with {alg!r}; only {', '.join(ALGORITHMS)} are accepted.",
            )
        jwk = await self._key(header.get("kid"), str(alg))
        try:
            key = jwt.PyJWK(jwk, algorithm=str(alg)).key
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[str(alg)],
                audience=self._client_id,
                issuer=self._issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("token_expired", "The ID token has expired; sign in again.") from None
        except jwt.InvalidAudienceError:
            raise OidcError(
                "wrong_audience", "The ID token was issued for another application (its audience is not sso.client_id)."
            ) from None
        except jwt.InvalidIssuerError:
            raise OidcError("wrong_issuer", "The ID token was issued by another provider than sso.issuer.") from None
        except jwt.InvalidSignatureError:
            raise OidcError(
                "bad_signature", "The ID token's signature does not match the identity provider's keys."
            ) from None
        except jwt.PyJWTError as exc:
            raise OidcError("invalid_token", f"The ID token is not valid: {exc}.") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self._client_id:
            raise OidcError("wrong_audience", "The ID token names several audiences and its azp is not sso.client_id.")
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not secrets.compare_digest(token_nonce, nonce):
            raise OidcError(
                "wrong_nonce", "The ID token does not belong to this sign-in (nonce mismatch); start again."
            )
        groups = claims.get(self._config.groups_claim) or []
        email = claims.get("email")
        name = claims.get("name")
        return Identity(
            subject=str(claims["sub"]),
            email=email.strip().lower() if isinstance(email, str) else None,
            # Some providers send the string "true"; anything else is not a verified address.
            email_verified=claims.get("email_verified") in (True, "true"),
            name=name if isinstance(name, str) else None,
            groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
        )

    # ---- provider metadata -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._session

    async def _get_json(self, url: str, what: str) -> JSONObject:
        try:
            async with self._http().get(url, headers={"accept": "application/json"}) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"The identity provider's {what} ({url}) failed: {exc!r}."
            raise OidcError("provider_unreachable", message) from None
        if status != 200:
            raise OidcError("provider_error", f"The identity provider's {what} ({url}) answered HTTP {status}.")
        return _json_object(body)

    async def _metadata(self) -> JSONObject:
        now = self._now()
        if self._discovery is not None and now - self._discovered_at < _DISCOVERY_TTL:
            return self._discovery
        doc = await self._get_json(self._issuer + "/.well-known/openid-configuration", "discovery document")
        if str(doc.get("issuer", "")).rstrip("/") != self._issuer:
            raise OidcError(
                "wrong_issuer",
                f"The discovery document names issuer {doc.get('issuer')!r}, not sso.issuer {self._issuer!r}.",
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            _text(doc, name)
        self._discovery, self._discovered_at = doc, now
        return doc

    async def _key(self, kid: object, alg: str) -> JSONObject:
        found = self._find(kid, alg)
        if found is None and self._now() - self._keys_read_at >= _JWKS_REFRESH_MIN:
            doc = await self._metadata()
            jwks = await self._get_json(_text(doc, "jwks_uri"), "key set (JWKS)")
            keys = jwks.get("keys")
            self._keys = [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
            self._keys_read_at = self._now()
            found = self._find(kid, alg)
        if found is None:
            message = f"The ID token is signed with a key ({kid!r}) the identity provider does not publish."
            raise OidcError("unknown_key", message)
        return found

    def _find(self, kid: object, alg: str) -> JSONObject | None:
        usable = [k for k in self._keys if k.get("use", "sig") == "sig" and k.get("alg", alg) == alg]
        if kid is None:
            return usable[0] if len(usable) == 1 else None
        return next((k for k in usable if k.get("kid") == kid), None)


def _text(doc: JSONObject, name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise OidcError("provider_error", f"The identity provider's discovery document has no usable {name}.")
    return value


def _json_object(body: bytes) -> JSONObject:
    try:
        value: JSONValue = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
