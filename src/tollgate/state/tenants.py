"""Organisations, teams and users: the tenancy tree keys hang from, their limits and budgets, and their stores."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypedDict, TypeVar, cast, get_args

from tollgate.context import Budget, Limit, Scope
from tollgate.types import JSONObject, JSONValue

Role = Literal["admin", "team_admin", "viewer", "user"]
ROLES: tuple[Role, ...] = get_args(Role)
BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
BUDGET_PERIODS: tuple[BudgetPeriod, ...] = get_args(BudgetPeriod)
LIMIT_FIELDS = ("rpm", "tpm", "input_tpm", "output_tpm", "max_parallel")

# Which key roles a user's role permits: a key never carries more rights than the person it belongs to.
KEY_ROLES_FOR_USER: dict[str, frozenset[str]] = {
    "admin": frozenset(ROLES),
    "team_admin": frozenset({"team_admin", "user"}),
    "viewer": frozenset({"viewer", "user"}),
    "user": frozenset({"user"}),
}


class DuplicateError(Exception):
    """An id or a unique name (org name, team name within its org, user email) is already taken."""

    def __init__(self, message: str, field_name: str) -> None:
        super().__init__(message)
        self.field_name = field_name


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """The rate limits an entity sets for itself; ``None`` leaves that dimension unlimited at this level."""

    rpm: int | None = None
    tpm: int | None = None
    input_tpm: int | None = None
    output_tpm: int | None = None
    max_parallel: int | None = None

    def is_set(self) -> bool:
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS)

    def to_json(self) -> JSONObject:
        return {name: getattr(self, name) for name in LIMIT_FIELDS if getattr(self, name) is not None}

    @classmethod
    def from_json(cls, value: JSONValue) -> LimitSpec:
        """Rebuild from stored JSON (already validated when it was written)."""
        if not isinstance(value, dict):
            return cls()
        return cls(**{name: int(v) for name in LIMIT_FIELDS if isinstance(v := value.get(name), int | float)})

    def resolve(self, scope: Scope, scope_id: str) -> Limit | None:
        if not self.is_set():
            return None
        return Limit(scope, scope_id, self.rpm, self.tpm, self.input_tpm, self.output_tpm, self.max_parallel)


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A USD budget an entity sets for itself over a period."""

    limit_usd: float
    period: BudgetPeriod = "monthly"

    def to_json(self) -> JSONObject:
        return {"limit_usd": self.limit_usd, "period": self.period}

    @classmethod
    def from_json(cls, value: JSONValue) -> BudgetSpec | None:
        if not isinstance(value, dict) or not isinstance(limit := value.get("limit_usd"), int | float):
            return None
        period = value.get("period")
        return cls(float(limit), period if period in BUDGET_PERIODS else "monthly")

    def resolve(self, scope: Scope, scope_id: str) -> Budget:
        return Budget(scope, scope_id, self.limit_usd, self.period)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entity:
    """What orgs, teams and users share: a name, an allow-list, limits, a budget, metadata, a soft delete."""

    id: str
    name: str
    created_at: float
    allowed_models: tuple[str, ...] = ()
    limits: LimitSpec = field(default_factory=LimitSpec)
    budget: BudgetSpec | None = None
    metadata: JSONObject = field(default_factory=dict)
    # Soft delete: rows stay so audit records and ledger rows keep pointing at something, and so a
    # deleted team's keys can be refused with a message that says why.
    deleted_at: float | None = None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def public(self) -> JSONObject:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "allowed_models": list(self.allowed_models),
            "limits": self.limits.to_json(),
            "budget": self.budget.to_json() if self.budget else None,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Org(Entity):
    def public(self) -> JSONObject:
        return {"object": "organization", **Entity.public(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Team(Entity):
    org_id: str

    def public(self) -> JSONObject:
        return {"object": "team", **Entity.public(self), "org_id": self.org_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Entity):
    team_id: str
    org_id: str
    email: str | None = None
    role: Role = "user"

    def public(self) -> JSONObject:
        return {
            "object": "user",
            **Entity.public(self),
            "team_id": self.team_id,
            "org_id": self.org_id,
            "email": self.email,
            "role": self.role,
        }


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


E = TypeVar("E", Org, Team, User)


class EntityStore(Protocol[E]):
    """One kind of tenant entity. ``get`` also returns soft-deleted entities (callers decide what that means)."""

    async def create(self, entity: E) -> None:
        """Insert; raise ``DuplicateError`` when the id or the unique name is taken."""
        ...

    async def update(self, entity: E) -> None:
        """Replace the stored entity with the same id; raise ``DuplicateError`` on a unique-name clash."""
        ...

    async def get(self, entity_id: str) -> E | None: ...

    async def list(self, parent_id: str | None = None, include_deleted: bool = False) -> list[E]: ...


class TenantStore(Protocol):
    """The three entity stores of one backend (delete is an ``update`` that sets ``deleted_at``)."""

    @property
    def orgs(self) -> EntityStore[Org]: ...

    @property
    def teams(self) -> EntityStore[Team]: ...

    @property
    def users(self) -> EntityStore[User]: ...


# --- Row mapping shared by the SQL backends ---------------------------------------------------------

RowValue = JSONValue


@dataclass(frozen=True)
class EntityTable(Generic[E]):
    """How one entity kind maps to a SQL table; the same mapping serves SQLite and PostgreSQL."""

    table: str
    kind: str  # "org", "team", "user": for messages
    parent: str | None  # the column ``list(parent_id)`` filters on
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    to_row: Callable[[E], tuple[RowValue, ...]]
    from_row: Callable[[Sequence[RowValue]], E]
    unique_field: str  # the field a unique-index violation is reported against


_COMMON = ("id", "name", "created_at", "deleted_at", "allowed_models", "limits", "budget", "metadata")
_JSON = frozenset({"allowed_models", "limits", "budget", "metadata"})


def _common_row(e: Entity) -> tuple[RowValue, ...]:
    return (
        e.id,
        e.name,
        e.created_at,
        e.deleted_at,
        list(e.allowed_models),
        e.limits.to_json(),
        e.budget.to_json() if e.budget else None,
        e.metadata,
    )


class _Common(TypedDict):
    id: str
    name: str
    created_at: float
    deleted_at: float | None
    allowed_models: tuple[str, ...]
    limits: LimitSpec
    budget: BudgetSpec | None
    metadata: JSONObject


def _common(row: Sequence[RowValue]) -> _Common:
    models, metadata, deleted = row[4], row[7], row[3]
    return {
        "id": str(row[0]),
        "name": str(row[1]),
        "created_at": float(cast(float, row[2])),
        "deleted_at": float(cast(float, deleted)) if deleted is not None else None,
        "allowed_models": tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
        "limits": LimitSpec.from_json(row[5]),
        "budget": BudgetSpec.from_json(row[6]),
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def _org_from_row(row: Sequence[RowValue]) -> Org:
    return Org(**_common(row))


def _team_from_row(row: Sequence[RowValue]) -> Team:
    return Team(**_common(row), org_id=str(row[8]))


def _user_from_row(row: Sequence[RowValue]) -> User:
    role = row[11] if row[11] in ROLES else "user"
    return User(
        **_common(row),
        team_id=str(row[8]),
        org_id=str(row[9]),
        email=str(row[10]) if row[10] is not None else None,
        role=role,
    )


ORG_TABLE: EntityTable[Org] = EntityTable("orgs", "org", None, _COMMON, _JSON, _common_row, _org_from_row, "name")
TEAM_TABLE: EntityTable[Team] = EntityTable(
    "teams",
    "team",
    "org_id",
    (*_COMMON, "org_id"),
    _JSON,
    lambda t: (*_common_row(t), t.org_id),
    _team_from_row,
    "name",
)
USER_TABLE: EntityTable[User] = EntityTable(
    "users",
    "user",
    "team_id",
    (*_COMMON, "team_id", "org_id", "email", "role"),
    _JSON,
    lambda u: (*_common_row(u), u.team_id, u.org_id, u.email, u.role),
    _user_from_row,
    "email",
)


def unique_name(entity: Org | Team | User) -> tuple[str, ...] | None:
    """The value that must be unique among live entities of a kind (matching the SQL unique indexes)."""
    if isinstance(entity, Team):
        return (entity.org_id, entity.name.lower())
    if isinstance(entity, User):
        return (entity.email.lower(),) if entity.email else None
    return (entity.name.lower(),)


# The tenants_0001 schema for both SQL backends: ``{real}`` and ``{json}`` are the column types of each
# (REAL/TEXT in SQLite, DOUBLE PRECISION/JSONB in PostgreSQL). Migrations are append-only: never edit this
# text once released; add a ``tenants_0002_...`` instead.
TENANT_SCHEMA_0001 = """
    CREATE TABLE IF NOT EXISTS orgs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at {real} NOT NULL,
        deleted_at {real},
        allowed_models {json} NOT NULL,
        limits {json} NOT NULL,
        budget {json},
        metadata {json} NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS orgs_live_name ON orgs (lower(name)) WHERE deleted_at IS NULL;
    CREATE TABLE IF NOT EXISTS teams (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at {real} NOT NULL,
        deleted_at {real},
        allowed_models {json} NOT NULL,
        limits {json} NOT NULL,
        budget {json},
        metadata {json} NOT NULL,
        org_id TEXT NOT NULL REFERENCES orgs(id)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS teams_live_name ON teams (org_id, lower(name)) WHERE deleted_at IS NULL;
    CREATE INDEX IF NOT EXISTS teams_org ON teams (org_id);
    CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at {real} NOT NULL,
        deleted_at {real},
        allowed_models {json} NOT NULL,
        limits {json} NOT NULL,
        budget {json},
        metadata {json} NOT NULL,
        team_id TEXT NOT NULL REFERENCES teams(id),
        org_id TEXT NOT NULL REFERENCES orgs(id),
        email TEXT,
        role TEXT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS users_live_email ON users (lower(email))
        WHERE deleted_at IS NULL AND email IS NOT NULL;
    CREATE INDEX IF NOT EXISTS users_team ON users (team_id);
"""
