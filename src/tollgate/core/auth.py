"""AUTHENTICATE: API key → principal, with an in-memory cache so the hot path never touches the database."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from tollgate.context import Principal
from tollgate.errors import AuthenticationError
from tollgate.state.keys import KeyRecord, KeyStore, hash_key

_MISSING = "Missing API key. Send your Tollgate key as 'Authorization: Bearer <key>' (or in the 'x-api-key' header)."
_INVALID = "Invalid API key. Check the key you send to Tollgate, or ask your gateway admin for a new one."

# Positive entries live this long before they are re-read, so a revocation made by another process
# (the CLI, another replica) is seen within this many seconds; revocations made through this process's
# admin API take effect at once.
POSITIVE_TTL = 5.0
NEGATIVE_TTL = 5.0
_MAX_CACHE = 100_000


def key_from_headers(headers: Mapping[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in (b"x-api-key", b"api-key"):
        value_b = headers.get(name)
        if value_b:
            return value_b.decode("latin-1").strip()
    return None


class Authenticator:
    def __init__(self, store: KeyStore, master_key: str) -> None:
        self._store = store
        self._master_bytes = master_key.encode()
        self._cache: dict[str, tuple[KeyRecord | None, Principal | None, float]] = {}
        self._now = time.time
        self.master = Principal(key_id="master", name="master key", role="admin")

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthenticationError(_MISSING)
        if hmac.compare_digest(key.encode(), self._master_bytes):
            return self.master
        digest = hash_key(key)
        now = self._now()
        hit = self._cache.get(digest)
        if hit is not None and hit[2] > now:
            record, principal = hit[0], hit[1]
        else:
            record = await self._store.get_by_hash(digest)
            principal = _principal(record) if record is not None else None
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[digest] = (record, principal, now + (POSITIVE_TTL if record else NEGATIVE_TTL))
        if record is None or principal is None:
            raise AuthenticationError(_INVALID)
        if record.revoked_at is not None:
            raise AuthenticationError("This API key has been revoked.")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationError("This API key has expired.")
        return principal

    def invalidate(self, record: KeyRecord) -> None:
        """Forget a key so its next use re-reads the store (called on revoke/rotate)."""
        self._cache.pop(record.key_hash, None)

    def remember(self, record: KeyRecord) -> None:
        self._cache[record.key_hash] = (record, _principal(record), self._now() + POSITIVE_TTL)


def _principal(record: KeyRecord) -> Principal:
    return Principal(
        key_id=record.id,
        name=record.name,
        role=record.role,
        user_id=record.user_id,
        team_id=record.team_id,
        allowed_models=record.allowed_models,
        metadata=record.metadata,
    )
