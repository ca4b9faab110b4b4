"""Single sign-on for the admin UI: the sign-in flow's checks, and the console sessions it hands out.

A session is a bearer token (``tgs.<claims>.<hmac>``) the UI keeps like an admin key, never a cookie, so the
admin API stays free of CSRF: a browser never attaches it on its own. It is signed with a key every replica
derives from the same secret, so any replica accepts it without a shared session table. Sign-out is recorded
in the audit log (``sso.sign_out``), which every replica reads, so an ended session is refused everywhere.
The admin API accepts sessions; the model endpoints do not (a console session cannot spend money).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from tollgate.config.sso import SsoConfig
from tollgate.context import Principal
from tollgate.core.oidc import Challenge, Identity, OidcClient, OidcError
from tollgate.errors import AuthenticationError, ServiceUnavailableError
from tollgate.state.audit import AuditQuery, AuditStore, new_audit_record
from tollgate.types import JSONObject, JSONValue

log = logging.getLogger("tollgate.sso")

SESSION_PREFIX = "tgs."
FLOW_COOKIE = "tollgate_sso"
FLOW_SECONDS = 600  # from leaving for the provider to coming back
SIGN_IN = "sso.sign_in"
SIGN_IN_REFUSED = "sso.sign_in_refused"
SIGN_OUT = "sso.sign_out"
# How long this replica trusts that a session was not signed out elsewhere before asking the audit log again.
_RECHECK_SECONDS = 5.0
_MAX_REMEMBERED = 100_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 over compact JSON: tamper-proof (not secret) tokens for sessions and the flow cookie."""

    def __init__(self, secret: bytes, purpose: bytes) -> None:
        # One key per purpose, so a flow cookie can never be replayed as a session token or back.
        self._key = hmac.new(secret, purpose, hashlib.sha256).digest()

    def sign(self, claims: JSONObject) -> str:
        body = _b64(orjson.dumps(claims))
        return body + "." + _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str) -> JSONObject | None:
        body, _, mac = token.partition(".")
        if not body or not mac or not body.isascii() or not mac.isascii():
            return None
        expected = _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            return None
        try:
            claims: JSONValue = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        return claims if isinstance(claims, dict) else None


@dataclass(frozen=True, slots=True)
class Session:
    """A console session: who signed in, with which role, until when."""

    id: str
    email: str
    subject: str
    role: str
    expires_at: int

    @property
    def key_id(self) -> str:
        """How the audit log names this session's person as the actor of their changes."""
        return "sso:" + self.email

    def principal(self) -> Principal:
        return Principal(
            key_id=self.key_id,
            name=self.email,
            role=self.role,
            metadata={"sso_session": self.id, "sso_expires_at": self.expires_at},
        )


@dataclass(frozen=True, slots=True)
class SignIn:
    """A finished sign-in: the bearer token for the UI and what it stands for."""

    token: str
    session: Session


def secret_for(config: SsoConfig, master_key: str) -> bytes:
    if config.session_secret:
        return config.session_secret.encode()
    # Derived, so every replica (which shares the master key) signs alike without one more secret to manage.
    return hmac.new(master_key.encode(), b"tollgate sso session key v1", hashlib.sha256).digest()


class SingleSignOn:
    """The sign-in flow's policy (domains, verified email, role) over an ``OidcClient``, and session checks."""

    def __init__(
        self,
        config: SsoConfig,
        master_key: str,
        audit: AuditStore,
        clock: Callable[[], float] = time.time,
        oidc: OidcClient | None = None,
    ) -> None:
        if importlib.util.find_spec("jwt") is None or importlib.util.find_spec("cryptography") is None:
            raise ValueError("sso.enabled needs PyJWT with its crypto extra: pip install 'tollgate[sso]'")
        self.config = config
        self.oidc = oidc or OidcClient(config, clock)
        secret = secret_for(config, master_key)
        self._sessions = Signer(secret, b"session")
        self._flows = Signer(secret, b"flow")
        self._audit = audit
        self._now = clock
        self._ended: dict[str, float] = {}  # session id -> its expiry: signed out (here, or seen in the audit log)
        self._live_until: dict[str, float] = {}  # session id -> until when "not signed out" is trusted

    @property
    def secure_cookie(self) -> bool:
        return str(self.config.redirect_url).startswith("https://")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.oidc.close()

    # ---- the flow ---------------------------------------------------------------------------------------

    async def begin(self) -> tuple[str, str]:
        """The provider's authorization URL to send the browser to, and the signed flow cookie's value."""
        challenge = Challenge.new()
        url = await self.oidc.authorization_url(challenge)
        cookie = self._flows.sign(
            {
                "state": challenge.state,
                "nonce": challenge.nonce,
                "verifier": challenge.verifier,
                "exp": int(self._now()) + FLOW_SECONDS,
            }
        )
        return url, cookie

    async def finish(self, code: str | None, state: str | None, cookie: str | None, request_id: str) -> SignIn:
        """Check the provider's answer against this browser's flow; raises ``OidcError`` saying why not."""
        flow = self._flows.verify(cookie) if cookie else None
        expires = flow.get("exp") if flow is not None else None
        if flow is None or not isinstance(expires, int) or expires < self._now():
            raise OidcError(
                "no_flow",
                "This sign-in was not started in this browser, or took longer than 10 minutes; start it again.",
            )
        expected_state = str(flow.get("state", ""))
        if not state or not hmac.compare_digest(state.encode(), expected_state.encode()):
            raise OidcError(
                "wrong_state",
                "The answer from the identity provider does not belong to the sign-in this browser started "
                "(state mismatch); start it again.",
            )
        if not code:
            raise OidcError("no_code", "The identity provider sent no authorization code.")
        challenge = Challenge(expected_state, str(flow.get("nonce", "")), str(flow.get("verifier", "")))
        id_token = await self.oidc.exchange(code, challenge)
        identity = await self.oidc.verify(id_token, challenge.nonce)
        email, role = await self._admit(identity, request_id)
        signed_in = self.issue(email, identity.subject, role)
        session = signed_in.session
        await self._audit.append(
            new_audit_record(
                actor_key_id=session.key_id,
                actor_role=role,
                action=SIGN_IN,
                target_type="session",
                target_id=session.id,
                before=None,
                after={"email": email, "subject": identity.subject, "role": role, "expires_at": session.expires_at},
                request_id=request_id,
            )
        )
        log.info("SSO sign-in: %s as %s (session %s)", email, role, session.id)
        return signed_in

    def issue(self, email: str, subject: str, role: str) -> SignIn:
        """A new console session for someone the flow admitted."""
        session = Session(
            id="sso_" + secrets.token_hex(12),
            email=email,
            subject=subject,
            role=role,
            expires_at=int(self._now()) + self.config.session_seconds,
        )
        claims: JSONObject = {"sid": session.id, "email": email, "sub": subject, "role": role}
        claims["exp"] = session.expires_at
        return SignIn(SESSION_PREFIX + self._sessions.sign(claims), session)

    async def _admit(self, identity: Identity, request_id: str) -> tuple[str, str]:
        """The email and console role of a verified identity, or a refusal (audited: the token was genuine)."""
        email = identity.email
        refusal: OidcError | None = None
        if not email or "@" not in email:
            refusal = OidcError("no_email", "The identity provider sent no email address (is 'email' in sso.scopes?).")
        elif not identity.email_verified:
            refusal = OidcError(
                "email_not_verified",
                f"The identity provider has not verified the address {email}, so it cannot be used to sign in.",
            )
        elif email.rsplit("@", 1)[1] not in self.config.allowed_domains:
            refusal = OidcError(
                "domain_not_allowed",
                f"{email} may not sign in here: only addresses at {', '.join(self.config.allowed_domains)} may.",
            )
        if refusal is not None:
            await self._audit.append(
                new_audit_record(
                    actor_key_id="sso:" + (email or identity.subject),
                    actor_role="none",
                    action=SIGN_IN_REFUSED,
                    target_type="session",
                    target_id=refusal.reason,
                    before=None,
                    after={"email": email, "subject": identity.subject, "reason": refusal.reason},
                    request_id=request_id,
                )
            )
            raise refusal
        assert email is not None
        admin = set(self.config.admin_groups).intersection(identity.groups)
        return email, "admin" if admin else self.config.role

    # ---- sessions ---------------------------------------------------------------------------------------

    def session_of(self, token: str) -> Session | None:
        """The session a well-signed token names, expired or not (None if it is not ours)."""
        claims = self._sessions.verify(token[len(SESSION_PREFIX) :]) if token.startswith(SESSION_PREFIX) else None
        if claims is None:
            return None
        try:
            return Session(
                id=str(claims["sid"]),
                email=str(claims["email"]),
                subject=str(claims["sub"]),
                role=str(claims["role"]),
                expires_at=int(str(claims["exp"])),
            )
        except (KeyError, ValueError):
            return None

    async def authenticate(self, token: str, admin_api: bool) -> Principal:
        session = self.session_of(token)
        if session is None:
            raise AuthenticationError("This console session is not valid here; sign in again.")
        if not admin_api:
            raise AuthenticationError(
                "A console session (single sign-on) opens the admin API only; call models with an API key."
            )
        now = self._now()
        if session.expires_at <= now:
            raise AuthenticationError("Your console session has expired; sign in again.")
        if await self._signed_out(session, now):
            raise AuthenticationError("This console session was signed out; sign in again.")
        return session.principal()

    async def _signed_out(self, session: Session, now: float) -> bool:
        if session.id in self._ended:
            return True
        if self._live_until.get(session.id, 0.0) > now:
            return False
        try:
            found = await self._audit.query(AuditQuery(action=SIGN_OUT, target=session.id, limit=1))
        except Exception as exc:
            if session.id in self._live_until:
                return False  # checked before: keep its last known state while the store is down
            raise ServiceUnavailableError(
                "Console sessions cannot be checked right now because the gateway's database is unreachable.",
                headers={"retry-after": "1"},
            ) from exc
        self._forget_expired(now)
        if found:
            self._ended[session.id] = session.expires_at
            return True
        self._live_until[session.id] = now + _RECHECK_SECONDS
        return False

    async def sign_out(self, session: Session, request_id: str) -> None:
        self._ended[session.id] = session.expires_at
        self._live_until.pop(session.id, None)
        await self._audit.append(
            new_audit_record(
                actor_key_id=session.key_id,
                actor_role=session.role,
                action=SIGN_OUT,
                target_type="session",
                target_id=session.id,
                before=None,
                after={"email": session.email},
                request_id=request_id,
            )
        )

    def _forget_expired(self, now: float) -> None:
        if len(self._ended) + len(self._live_until) < _MAX_REMEMBERED:
            return
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now}
        self._live_until = {sid: t for sid, t in self._live_until.items() if t > now}
