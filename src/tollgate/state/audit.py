"""The audit log of admin actions (who, what, when, before/after) and the ``AuditStore`` protocol."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from tollgate.types import JSONObject, JSONValue

# Fields that must never reach an audit record, whatever an entity's ``public()`` grows to contain.
_SECRET_FIELDS = frozenset({"key", "key_hash", "secret", "password", "api_key"})

MAX_QUERY_LIMIT = 10_000


def scrub(value: JSONObject | None) -> JSONObject | None:
    """A copy without secret fields (top level and nested), for the before/after snapshots."""
    if value is None:
        return None
    return {k: _scrub_value(v) for k, v in value.items() if k not in _SECRET_FIELDS}


def _scrub_value(value: JSONValue) -> JSONValue:
    if isinstance(value, dict):
        return scrub(value)
    if isinstance(value, list):
        return [_scrub_value(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One admin action: ``action`` is ``<kind>.<verb>`` (``key.rotate``, ``team.delete``)."""

    id: str
    at: float
    actor_key_id: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    before: JSONObject | None = None
    after: JSONObject | None = None
    request_id: str | None = None

    def public(self) -> JSONObject:
        return {
            "id": self.id,
            "at": self.at,
            "actor": {"key_id": self.actor_key_id, "role": self.actor_role},
            "action": self.action,
            "target": {"type": self.target_type, "id": self.target_id},
            "before": self.before,
            "after": self.after,
            "request_id": self.request_id,
        }


def new_audit_record(
    *,
    actor_key_id: str,
    actor_role: str,
    action: str,
    target_type: str,
    target_id: str,
    before: JSONObject | None,
    after: JSONObject | None,
    request_id: str | None = None,
    at: float | None = None,
) -> AuditRecord:
    return AuditRecord(
        id="aud_" + secrets.token_hex(8),
        at=time.time() if at is None else at,
        actor_key_id=actor_key_id,
        actor_role=actor_role,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before=scrub(before),
        after=scrub(after),
        request_id=request_id,
    )


_FIELD = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def _like(prefix: str) -> str:
    """A ``LIKE`` pattern (``ESCAPE '\\'``) matching the strings that start with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _action_matches(pattern: str, action: str) -> bool:
    return action.startswith(pattern[:-1]) if pattern.endswith("*") else action == pattern


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``GET /admin/audit`` and ``GET /admin/guardrails/events``. Newest first.

    ``actor`` is a key id, ``target`` an entity id. ``action`` is an action (``key.rotate``) or, ending in
    ``*``, a prefix (``guardrail.*``); ``exclude_action`` leaves such records out. ``fields`` are
    ``(name, value)`` pairs the ``after`` snapshot must hold as strings (``("team_id", "payments")``)."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    target: str | None = None
    limit: int = 1000
    action: str | None = None
    exclude_action: str | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name, _ in self.fields:
            if not _FIELD.fullmatch(name):
                raise ValueError(f"not a field name of an audit snapshot: {name!r}")

    def matches(self, r: AuditRecord) -> bool:
        after = r.after or {}
        return (
            (self.since is None or r.at >= self.since)
            and (self.until is None or r.at < self.until)
            and (self.actor is None or r.actor_key_id == self.actor)
            and (self.target is None or r.target_id == self.target)
            and (self.action is None or _action_matches(self.action, r.action))
            and (self.exclude_action is None or not _action_matches(self.exclude_action, r.action))
            and all(after.get(name) == value for name, value in self.fields)
        )

    def where(self, placeholder: str = "?") -> tuple[str, list[JSONValue]]:
        """A SQL ``WHERE`` clause and its arguments; ``placeholder`` is ``?`` (SQLite) or ``$`` (numbered,
        PostgreSQL). Snapshots are JSON text in both: ``json_extract`` in SQLite, ``::jsonb ->>`` in PostgreSQL."""
        clauses: list[str] = []
        args: list[JSONValue] = []

        def arg(value: JSONValue) -> str:
            args.append(value)
            return "?" if placeholder == "?" else f"${len(args)}"

        for column, op, value in (
            ("at", ">=", self.since),
            ("at", "<", self.until),
            ("actor_key_id", "=", self.actor),
            ("target_id", "=", self.target),
        ):
            if value is not None:
                clauses.append(f"{column} {op} {arg(value)}")
        for pattern, negate in ((self.action, False), (self.exclude_action, True)):
            if pattern is None:
                continue
            if pattern.endswith("*"):
                test = f"action LIKE {arg(_like(pattern[:-1]))} ESCAPE '\\'"
            else:
                test = f"action = {arg(pattern)}"
            clauses.append(f"NOT ({test})" if negate else test)
        for name, value in self.fields:
            if placeholder == "?":
                clauses.append(f"json_extract(after_state, {arg('$.' + name)}) = {arg(value)}")
            else:
                clauses.append(f"(after_state::jsonb ->> {arg(name)}) = {arg(value)}")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class AuditStore(Protocol):
    async def append(self, record: AuditRecord) -> None: ...

    async def append_many(self, records: Sequence[AuditRecord]) -> None:
        """Write a batch in one transaction, all or nothing. Idempotent per record id: a batch written again
        (after a lost acknowledgement) leaves one copy of each record."""
        ...

    async def query(self, query: AuditQuery) -> list[AuditRecord]: ...


@dataclass
class MemoryAuditStore:
    records: list[AuditRecord] = field(default_factory=list)

    async def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    async def append_many(self, records: Sequence[AuditRecord]) -> None:
        known = {r.id for r in self.records}
        self.records.extend(r for r in records if r.id not in known)

    async def query(self, query: AuditQuery) -> list[AuditRecord]:
        found = [r for r in self.records if query.matches(r)]
        found.sort(key=lambda r: r.at, reverse=True)
        return found[: query.limit]


AUDIT_COLUMNS = (
    "id, at, actor_key_id, actor_role, action, target_type, target_id, before_state, after_state, request_id"
)

# ``{real}`` and ``{json}`` are each SQL backend's column types (see tenants.TENANT_SCHEMA_0001). Append-only.
AUDIT_SCHEMA_0001 = """
    CREATE TABLE IF NOT EXISTS audit_log (
        id TEXT PRIMARY KEY,
        at {real} NOT NULL,
        actor_key_id TEXT NOT NULL,
        actor_role TEXT NOT NULL,
        action TEXT NOT NULL,
        target_type TEXT NOT NULL,
        target_id TEXT NOT NULL,
        before_state {json},
        after_state {json},
        request_id TEXT
    );
    CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
    CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor_key_id, at);
    CREATE INDEX IF NOT EXISTS audit_log_target ON audit_log (target_id, at)
"""


def audit_row(r: AuditRecord) -> tuple[JSONValue, ...]:
    return (
        r.id,
        r.at,
        r.actor_key_id,
        r.actor_role,
        r.action,
        r.target_type,
        r.target_id,
        r.before,
        r.after,
        r.request_id,
    )


def audit_from_row(row: Sequence[JSONValue]) -> AuditRecord:
    before, after = row[7], row[8]
    return AuditRecord(
        id=str(row[0]),
        at=float(cast(float, row[1])),
        actor_key_id=str(row[2]),
        actor_role=str(row[3]),
        action=str(row[4]),
        target_type=str(row[5]),
        target_id=str(row[6]),
        before=before if isinstance(before, dict) else None,
        after=after if isinstance(after, dict) else None,
        request_id=str(row[9]) if row[9] is not None else None,
    )
