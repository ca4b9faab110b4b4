"""Who may do what in the admin API (roles, team scope), and the audit record every change leaves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tollgate.context import Principal, Scope
from tollgate.core.auth import Authenticator
from tollgate.errors import NotFoundError, PermissionDeniedError, TollgateError
from tollgate.state.audit import new_audit_record
from tollgate.state.factory import Storage
from tollgate.state.keys import KeyRecord
from tollgate.types import JSONObject

# The rights of each role (docs/admin-api.md has the full matrix). Calling models is allowed for every
# role: the admin API is a separate right, checked here.
READERS = ("admin", "viewer", "team_admin")  # team_admin: only its own team
TEAM_MANAGERS = ("admin", "team_admin")  # team_admin: only inside its own team
ADMINS = ("admin",)
# What a team_admin may hand out: never more than it has, and never the gateway-wide viewer right.
TEAM_ADMIN_GRANTS = ("team_admin", "user")


class ConflictError(TollgateError):
    """409: the id or unique name is taken, or the target's state forbids the change (e.g. a revoked key)."""

    status = 409
    type = "invalid_request_error"
    code = "conflict"


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller of an admin operation, as the audit log records it."""

    key_id: str
    role: str
    team_id: str | None = None
    org_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.key_id, principal.role, principal.team_id, principal.org_id)

    def require(self, roles: tuple[str, ...], what: str) -> None:
        if self.role not in roles:
            raise PermissionDeniedError(
                f"{what} needs a key with role {' or '.join(roles)}; this key has role '{self.role}'.",
                code="insufficient_role",
            )

    def require_team(self, team_id: str | None, what: str) -> None:
        """A team_admin acts only inside its own team; admin and (for reads) viewer are not limited."""
        if self.role != "team_admin" or team_id == self.team_id:
            return
        where = f"team '{team_id}'" if team_id else "no team"
        raise PermissionDeniedError(
            f"A team_admin key can {what} only in its own team ('{self.team_id}'); the target belongs to {where}.",
            code="outside_team",
        )


@dataclass(frozen=True, slots=True)
class AdminInput:
    """One admin operation's input: the id from the path (if any), the JSON body and the query string."""

    id: str | None = None
    body: JSONObject = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.id is None:
            raise NotFoundError("This operation needs an id in the path.")
        return self.id


@dataclass
class AdminCall:
    """What an admin operation works with: the stores, the actor, and the key cache to invalidate.

    The HTTP handlers and the CLI both build one, so they share validation, RBAC and auditing.
    """

    storage: Storage
    actor: Actor
    request_id: str | None = None
    authenticator: Authenticator | None = None

    async def audit(
        self, action: str, target_type: str, target_id: str, before: JSONObject | None, after: JSONObject | None
    ) -> None:
        # Written after the change succeeds; a failure here surfaces as a 500 rather than going unrecorded.
        await self.storage.audit.append(
            new_audit_record(
                actor_key_id=self.actor.key_id,
                actor_role=self.actor.role,
                action=action,
                target_type=target_type,
                target_id=target_id,
                before=before,
                after=after,
                request_id=self.request_id,
            )
        )

    def forget_key(self, record: KeyRecord) -> None:
        if self.authenticator is not None:
            self.authenticator.invalidate(record)

    def forget_scope(self, scope: Scope, scope_id: str) -> None:
        if self.authenticator is not None:
            self.authenticator.invalidate_scope(scope, scope_id)
