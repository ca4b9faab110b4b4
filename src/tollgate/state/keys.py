"""Virtual API keys: generation, hashing, and the ``KeyStore`` protocol every backend implements."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Protocol

from tollgate.state.tenants import BudgetSpec, LimitSpec
from tollgate.types import JSONObject

KEY_PREFIX = "tg-"


def generate_key() -> str:
    """A new virtual key: 256 bits of randomness, prefixed so leaked keys are easy to recognise and scan for."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """SHA-256: keys are high-entropy random strings, so a fast hash is safe and keeps lookups sub-microsecond."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def mask_key(key: str) -> str:
    """The hint listings show: enough to tell keys apart, far too little to use one."""
    return key[:7] + "…" + key[-4:]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key. The clear key is never stored: only its hash and a masked hint for listings."""

    id: str
    key_hash: str = field(repr=False)
    hint: str
    name: str
    user_id: str | None
    team_id: str | None
    role: str  # one of tenants.ROLES: "admin", "team_admin", "viewer", "user"
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    allowed_models: tuple[str, ...] = ()
    metadata: JSONObject = field(default_factory=dict)
    # Derived from the team when the key is made, so listings and the ledger need no join.
    org_id: str | None = None
    limits: LimitSpec = field(default_factory=LimitSpec)
    budget: BudgetSpec | None = None
    rotated_at: float | None = None

    def is_active(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> JSONObject:
        """What listings and the admin API show: everything but the hash."""
        return {
            "id": self.id,
            "key_hint": self.hint,
            "name": self.name,
            "user_id": self.user_id,
            "team_id": self.team_id,
            "role": self.role,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "allowed_models": list(self.allowed_models),
            "metadata": self.metadata,
            "org_id": self.org_id,
            "limits": self.limits.to_json(),
            "budget": self.budget.to_json() if self.budget else None,
            "rotated_at": self.rotated_at,
        }


class KeyStore(Protocol):
    async def put(self, record: KeyRecord) -> None:
        """Insert or replace the record with this id (a rotation replaces the hash, so the old key stops matching)."""
        ...

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None: ...

    async def list(self, team_id: str | None = None) -> list[KeyRecord]:
        """Every key (revoked ones too), oldest first; only one team's when ``team_id`` is given."""
        ...

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None: ...


def new_key_record(
    *,
    name: str,
    user_id: str | None = None,
    team_id: str | None = None,
    role: str = "user",
    expires_at: float | None = None,
    allowed_models: tuple[str, ...] = (),
    metadata: JSONObject | None = None,
    org_id: str | None = None,
    limits: LimitSpec | None = None,
    budget: BudgetSpec | None = None,
) -> tuple[str, KeyRecord]:
    """A fresh clear key and its record; the caller shows the clear key once and stores only the record."""
    key = generate_key()
    record = KeyRecord(
        id="key_" + secrets.token_hex(8),
        key_hash=hash_key(key),
        hint=mask_key(key),
        name=name,
        user_id=user_id,
        team_id=team_id,
        role=role,
        created_at=time.time(),
        expires_at=expires_at,
        allowed_models=allowed_models,
        metadata=metadata or {},
        org_id=org_id,
        limits=limits or LimitSpec(),
        budget=budget,
    )
    return key, record


def rotated(record: KeyRecord, at: float | None = None) -> tuple[str, KeyRecord]:
    """A new secret for the same key: same id and settings, new hash and hint; store it with ``put``."""
    key = generate_key()
    return key, replace(
        record, key_hash=hash_key(key), hint=mask_key(key), rotated_at=time.time() if at is None else at
    )
