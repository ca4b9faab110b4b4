"""In-process backends (``memory://``): for tests and single-process runs that need no persistence."""

from __future__ import annotations

from dataclasses import replace

from tollgate.state.keys import KeyRecord


class MemoryKeyStore:
    def __init__(self) -> None:
        self._by_hash: dict[str, KeyRecord] = {}

    async def put(self, record: KeyRecord) -> None:
        self._by_hash[record.key_hash] = record

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        return self._by_hash.get(key_hash)

    async def list(self) -> list[KeyRecord]:
        return sorted(self._by_hash.values(), key=lambda r: r.created_at)

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        for h, rec in self._by_hash.items():
            if rec.id == key_id:
                if rec.revoked_at is None:
                    rec = replace(rec, revoked_at=at)
                    self._by_hash[h] = rec
                return rec
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
