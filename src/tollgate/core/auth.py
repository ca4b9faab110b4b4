"""AUTHENTICATE: API key → key → user → team → org → principal, cached in memory so the hot path skips the database."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tollgate.context import Budget, Limit, Principal, Scope
from tollgate.errors import AuthenticationError, ServiceUnavailableError
from tollgate.policies.model_access import intersect_allow_lists
from tollgate.state.invalidation import Invalidation, InvalidationBus
from tollgate.state.keys import KeyRecord, KeyStore, hash_key
from tollgate.state.tenants import KEY_ROLES_FOR_USER, Entity, Org, Team, TenantStore, User
from tollgate.types import JSONObject

_MISSING = "Missing API key. Send your Tollgate key as 'Authorization: Bearer <key>' (or in the 'x-api-key' header)."
_INVALID = "Invalid API key. Check the key you send to Tollgate, or ask your gateway admin for a new one."

# Entries live this long before they are re-read, so a change made by another process that does not reach
# this one through the invalidation bus (the CLI; another replica while Redis is down or not configured) is
# seen within this many seconds. Changes made through this process's admin API take effect at once, and
# with a Redis bus (docs/distributed.md) so do those made on every other replica.
log = logging.getLogger("tollgate")

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


@dataclass(frozen=True, slots=True)
class _Entry:
    """A cached lookup: the record (None for an unknown key), and either its principal or why it is refused."""

    record: KeyRecord | None
    principal: Principal | None
    refusal: str | None
    expires: float


class Authenticator:
    def __init__(
        self,
        store: KeyStore,
        master_key: str,
        tenants: TenantStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tenants = tenants
        self._master_bytes = master_key.encode()
        self._cache: dict[str, _Entry] = {}
        self._now = clock
        self._bus: InvalidationBus | None = None
        self.store_errors = 0  # key-store reads that failed (served from the last known state, or 503)
        self._last_store_warning = float("-inf")
        # Bumped by every invalidation: a load that started before one must not cache what it read.
        self._generation = 0
        self.master = Principal(key_id="master", name="master key", role="admin")

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise AuthenticationError(_MISSING)
        if hmac.compare_digest(key.encode(), self._master_bytes):
            return self.master
        digest = hash_key(key)
        now = self._now()
        entry = self._cache.get(digest)
        if entry is None or entry.expires <= now:
            try:
                entry = await self._load(digest, now)
            except Exception as exc:
                # The key store is unreachable: a key seen before keeps its last known state (revocations
                # still arrive over the bus); an unknown key cannot be checked, so it is refused with 503.
                entry = self._stale(digest, entry, exc)
        record = entry.record
        if record is None:
            raise AuthenticationError(_INVALID)
        # Revocation and expiry are checked on every request, against the cached record.
        if record.revoked_at is not None:
            raise AuthenticationError("This API key has been revoked.")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationError("This API key has expired.")
        if entry.principal is None:
            raise AuthenticationError(entry.refusal or _INVALID)
        return entry.principal

    def _stale(self, digest: str, entry: _Entry | None, exc: Exception) -> _Entry:
        self.store_errors += 1
        now = self._now()
        if now - self._last_store_warning >= 60.0:
            self._last_store_warning = now
            log.warning("KEY STORE UNREACHABLE (%s): serving known keys from their last state", type(exc).__name__)
        if entry is None or entry.record is None:
            raise ServiceUnavailableError(
                "API keys cannot be checked right now because the gateway's key store is unreachable. "
                "Try again shortly.",
                headers={"retry-after": "1"},
            ) from None
        return entry

    async def _load(self, digest: str, now: float) -> _Entry:
        generation = self._generation
        record = await self._store.get_by_hash(digest)
        principal: Principal | None = None
        refusal: str | None = None
        if record is not None:
            resolved = await resolve_principal(record, self._tenants)
            if isinstance(resolved, Principal):
                principal = resolved
            else:
                refusal = resolved
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        entry = _Entry(record, principal, refusal, now + (POSITIVE_TTL if record else NEGATIVE_TTL))
        if generation == self._generation:
            self._cache[digest] = entry
        # else: an invalidation arrived while the store was read, so what was read may be stale: serve it to
        # this one request only (as if it had come just before the change) and re-read on the next.
        return entry

    def attach(self, bus: InvalidationBus) -> None:
        """Publish this process's invalidations on ``bus`` and apply every other replica's."""
        self._bus = bus
        bus.subscribe(self.apply, self.clear)

    def invalidate(self, record: KeyRecord) -> None:
        """Forget a key so its next use re-reads the store (on revoke, rotate, update), here and on every replica."""
        self._drop_hash(record.key_hash)
        # By id as well: after a rotation, other replicas may still hold the old secret's hash under this id.
        self._drop_scope("key", record.id)
        if self._bus is not None:
            self._bus.publish(Invalidation("key", record.id))

    def invalidate_scope(self, scope: Scope, scope_id: str) -> None:
        """Forget every key under a user, team or org (its settings changed, or it was deleted), on every replica."""
        self._drop_scope(scope, scope_id)
        if self._bus is not None:
            self._bus.publish(Invalidation(scope, scope_id))

    def apply(self, event: Invalidation) -> None:
        """Apply an invalidation published by another replica (never re-published)."""
        if event.scope == "hash":
            self._drop_hash(event.id)
        else:
            self._drop_scope(event.scope, event.id)

    def clear(self) -> None:
        """Forget every key (the bus may have missed messages: after a reconnection)."""
        self._generation += 1
        self._cache.clear()

    def _drop_hash(self, digest: str) -> None:
        self._generation += 1
        self._cache.pop(digest, None)

    def _drop_scope(self, scope: Scope, scope_id: str) -> None:
        self._generation += 1
        field_name = f"{scope}_id" if scope != "key" else "id"
        stale = [
            digest
            for digest, entry in self._cache.items()
            if entry.record is not None and getattr(entry.record, field_name) == scope_id
        ]
        for digest in stale:
            del self._cache[digest]


async def resolve_principal(record: KeyRecord, tenants: TenantStore | None) -> Principal | str:
    """The principal of a key, or a message saying why it cannot be used (its user, team or org is gone).

    Every level's allow-list applies (the principal gets their intersection), and every level's limits
    and budget apply at once (one ``Limit``/``Budget`` per level that sets one; the tightest wins).
    """
    user: User | None = None
    team: Team | None = None
    org: Org | None = None
    if tenants is not None:
        if record.user_id is not None:
            user = await tenants.users.get(record.user_id)
            if user is None or user.deleted:
                return f"The user '{record.user_id}' this API key belongs to {_gone(user)}."
        team_id = record.team_id or (user.team_id if user else None)
        if team_id is not None:
            team = await tenants.teams.get(team_id)
            if team is None or team.deleted:
                return (
                    f"The team '{team_id}' this API key belongs to {_gone(team)}; ask your gateway admin for a new key."
                )
        org_id = team.org_id if team is not None else record.org_id
        if org_id is not None:
            org = await tenants.orgs.get(org_id)
            if org is None or org.deleted:
                return f"The organization '{org_id}' this API key belongs to {_gone(org)}."
    role = record.role
    if user is not None and role not in KEY_ROLES_FOR_USER[user.role]:
        # Lowering a user's role lowers their keys': a key never has more rights than its user.
        role = "user"
    levels: list[tuple[Scope, str, Entity | KeyRecord]] = [("key", record.id, record)]
    if user is not None:
        levels.append(("user", user.id, user))
    if team is not None:
        levels.append(("team", team.id, team))
    if org is not None:
        levels.append(("org", org.id, org))
    limits: list[Limit] = []
    budgets: list[Budget] = []
    for scope, scope_id, level in levels:
        limit = level.limits.resolve(scope, scope_id)
        if limit is not None:
            limits.append(limit)
        if level.budget is not None:
            budgets.append(level.budget.resolve(scope, scope_id))
    # Tags for records: the broadest level first, so a key's own metadata wins over its team's.
    metadata: JSONObject = {}
    for e in (org, team, user):
        if e is not None:
            metadata.update(e.metadata)
    metadata.update(record.metadata)
    return Principal(
        key_id=record.id,
        name=record.name,
        role=role,
        user_id=user.id if user else record.user_id,
        team_id=team.id if team else record.team_id,
        org_id=org.id if org else record.org_id,
        allowed_models=intersect_allow_lists(
            record.allowed_models,
            user.allowed_models if user else (),
            team.allowed_models if team else (),
            org.allowed_models if org else (),
        ),
        metadata=metadata,
        limits=tuple(limits),
        budgets=tuple(budgets),
    )


def _gone(entity: Entity | None) -> str:
    return "does not exist" if entity is None else "was deleted"
