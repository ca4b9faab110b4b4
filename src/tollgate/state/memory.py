"""In-process backends (``memory://``): for tests and single-process runs that need no persistence."""

from __future__ import annotations

from dataclasses import replace
from typing import Generic

from tollgate.state.audit import MemoryAuditStore
from tollgate.state.keys import KeyRecord
from tollgate.state.ledger_memory import MemoryLedgerStore
from tollgate.state.tenants import DuplicateError, E, Org, Team, User, unique_name


class MemoryKeyStore:
    def __init__(self) -> None:
        self._by_hash: dict[str, KeyRecord] = {}
        self._by_id: dict[str, KeyRecord] = {}

    async def put(self, record: KeyRecord) -> None:
        old = self._by_id.get(record.id)
        if old is not None:
            # A rotation changes the hash: the old one must stop matching.
            self._by_hash.pop(old.key_hash, None)
        self._by_id[record.id] = record
        self._by_hash[record.key_hash] = record

    async def get(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        return self._by_hash.get(key_hash)

    async def list(self, team_id: str | None = None) -> list[KeyRecord]:
        records = (r for r in self._by_id.values() if team_id is None or r.team_id == team_id)
        return sorted(records, key=lambda r: r.created_at)

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        rec = self._by_id.get(key_id)
        if rec is not None and rec.revoked_at is None:
            rec = replace(rec, revoked_at=at)
            await self.put(rec)
        return rec


class MemoryEntityStore(Generic[E]):
    """One entity kind in a dict, enforcing the same uniqueness as the SQL backends' indexes."""

    def __init__(self, kind: str, parent: str | None) -> None:
        self._kind = kind
        self._parent = parent
        self._items: dict[str, E] = {}

    def _check_unique(self, entity: E) -> None:
        name = unique_name(entity)
        if name is None:
            return
        for other in self._items.values():
            if other.id != entity.id and other.deleted_at is None and unique_name(other) == name:
                field_name = "email" if isinstance(entity, User) else "name"
                raise DuplicateError(f"A {self._kind} with this {field_name} already exists.", field_name)

    async def create(self, entity: E) -> None:
        if entity.id in self._items:
            raise DuplicateError(f"A {self._kind} with id '{entity.id}' already exists.", "id")
        self._check_unique(entity)
        self._items[entity.id] = entity

    async def update(self, entity: E) -> None:
        if entity.deleted_at is None:
            self._check_unique(entity)
        self._items[entity.id] = entity

    async def get(self, entity_id: str) -> E | None:
        return self._items.get(entity_id)

    async def list(self, parent_id: str | None = None, include_deleted: bool = False) -> list[E]:
        found = [
            e
            for e in self._items.values()
            if (include_deleted or e.deleted_at is None)
            and (parent_id is None or self._parent is None or getattr(e, self._parent) == parent_id)
        ]
        return sorted(found, key=lambda e: e.created_at)


class MemoryTenantStore:
    def __init__(self) -> None:
        self.orgs: MemoryEntityStore[Org] = MemoryEntityStore("org", None)
        self.teams: MemoryEntityStore[Team] = MemoryEntityStore("team", "org_id")
        self.users: MemoryEntityStore[User] = MemoryEntityStore("user", "team_id")


class MemoryStorage:
    """``memory://``: every store in this process, nothing persisted."""

    def __init__(self) -> None:
        self.keys = MemoryKeyStore()
        self.tenants = MemoryTenantStore()
        self.audit = MemoryAuditStore()
        self.ledger = MemoryLedgerStore()

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
