"""Admin operations on virtual keys: create (shown once), list (masked), get, update, rotate, revoke."""

from __future__ import annotations

import time
from dataclasses import replace

from tollgate.api.admin_access import READERS, TEAM_ADMIN_GRANTS, TEAM_MANAGERS, AdminCall, AdminInput, ConflictError
from tollgate.api.admin_input import Body, json_list, query_flag
from tollgate.api.admin_tenants import live_team, live_user
from tollgate.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from tollgate.state.keys import KeyRecord, new_key_record, rotated
from tollgate.state.tenants import KEY_ROLES_FOR_USER, LimitSpec, Team, User
from tollgate.types import JSONObject

_SETTINGS = ("name", "role", "allowed_models", "metadata", "limits", "budget", "expires_in_seconds", "expires_at")


def _check_role(call: AdminCall, role: str, user: User | None, team: Team | None) -> None:
    if call.actor.role == "team_admin" and role not in TEAM_ADMIN_GRANTS:
        raise PermissionDeniedError(
            f"A team_admin key can create keys with the roles {', '.join(TEAM_ADMIN_GRANTS)} only; "
            f"'{role}' needs an admin key.",
            param="role",
            code="insufficient_role",
        )
    if user is not None and role not in KEY_ROLES_FOR_USER[user.role]:
        raise InvalidRequestError(
            f"A key cannot have more rights than its user: user '{user.id}' has role '{user.role}', "
            f"so its keys may have the roles {', '.join(sorted(KEY_ROLES_FOR_USER[user.role]))}.",
            param="role",
        )
    if role == "team_admin" and team is None:
        raise InvalidRequestError("A team_admin key must belong to a team: send 'team_id'.", param="team_id")


async def create_key(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(TEAM_MANAGERS, "Creating a key")
    body = Body(inp.body, ("user_id", "team_id", *_SETTINGS))
    # Every field is validated before any lookup, so a malformed body is a 400 whatever it references.
    user_id, team_id, role = body.ident("user_id"), body.ident("team_id"), body.role() or "user"
    name, expires_at = body.text("name") or "unnamed", body.expiry()
    models, metadata = body.models() or (), body.metadata() or {}
    limits, budget = body.limits() or LimitSpec(), body.budget()
    user = await live_user(call, user_id, "user_id") if user_id else None
    if user is not None:
        if team_id is not None and team_id != user.team_id:
            raise InvalidRequestError(
                f"User '{user.id}' belongs to team '{user.team_id}', not '{team_id}'.", param="team_id"
            )
        team_id = user.team_id
    if team_id is None and call.actor.role == "team_admin":
        team_id = call.actor.team_id
    call.actor.require_team(team_id, "create keys")
    team = await live_team(call, team_id, "team_id") if team_id else None
    _check_role(call, role, user, team)
    key, record = new_key_record(
        name=name,
        user_id=user.id if user else None,
        team_id=team.id if team else None,
        org_id=team.org_id if team else None,
        role=role,
        expires_at=expires_at,
        allowed_models=models,
        metadata=metadata,
        limits=limits,
        budget=budget,
    )
    await call.storage.keys.put(record)
    await call.audit("key.create", "key", record.id, None, record.public())
    # The clear key appears in this response only; it is not stored anywhere.
    return {**record.public(), "key": key}


async def list_keys(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Listing keys")
    query = dict(inp.query)
    team_id = query.get("team_id")
    if call.actor.role == "team_admin":
        call.actor.require_team(team_id or call.actor.team_id, "list keys")
        team_id = call.actor.team_id
    records = await call.storage.keys.list(team_id)
    if user_id := query.get("user_id"):
        records = [r for r in records if r.user_id == user_id]
    if not query_flag(query, "include_revoked") and "include_revoked" in query:
        records = [r for r in records if r.revoked_at is None]
    return json_list([r.public() for r in records])


async def _key(call: AdminCall, inp: AdminInput, what: str, manage: bool = False) -> KeyRecord:
    record = await call.storage.keys.get(inp.target)
    if record is None:
        raise NotFoundError(f"No key with id '{inp.target}'.")
    call.actor.require_team(record.team_id, what)
    if manage and call.actor.role == "team_admin" and record.role not in TEAM_ADMIN_GRANTS:
        # Rotating an admin's key would hand its new secret (and rights) to the team_admin.
        raise PermissionDeniedError(
            f"A team_admin key cannot {what} with role '{record.role}'; that needs an admin key.",
            code="insufficient_role",
        )
    return record


async def get_key(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Reading a key")
    return (await _key(call, inp, "read keys")).public()


async def update_key(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(TEAM_MANAGERS, "Changing a key")
    before = await _key(call, inp, "change keys", manage=True)
    if before.revoked_at is not None:
        raise ConflictError(f"Key '{before.id}' is revoked; create a new key instead.")
    body = Body(inp.body, _SETTINGS)
    after = before
    if body.has("role"):
        role = body.role() or "user"
        user = await call.storage.tenants.users.get(before.user_id) if before.user_id else None
        team = await call.storage.tenants.teams.get(before.team_id) if before.team_id else None
        _check_role(call, role, user, team)
        after = replace(after, role=role)
    after = replace(
        after,
        name=body.text("name") or before.name,
        allowed_models=(body.models() or ()) if body.has("allowed_models") else before.allowed_models,
        metadata=(body.metadata() or {}) if body.has("metadata") else before.metadata,
        limits=(body.limits() or LimitSpec()) if body.has("limits") else before.limits,
        budget=body.budget() if body.has("budget") else before.budget,
        # Sending either expiry field, even as null, sets it; null means the key never expires.
        expires_at=body.expiry() if body.has("expires_at") or body.has("expires_in_seconds") else before.expires_at,
    )
    await call.storage.keys.put(after)
    call.forget_key(after)
    await call.audit("key.update", "key", after.id, before.public(), after.public())
    return after.public()


async def rotate_key(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(TEAM_MANAGERS, "Rotating a key")
    before = await _key(call, inp, "rotate keys", manage=True)
    if before.revoked_at is not None:
        raise ConflictError(f"Key '{before.id}' is revoked and cannot be rotated; create a new key instead.")
    key, after = rotated(before)
    # One write replaces the hash: from here the old secret matches nothing in the store.
    await call.storage.keys.put(after)
    call.forget_key(before)
    await call.audit("key.rotate", "key", after.id, before.public(), after.public())
    return {**after.public(), "key": key}


async def revoke_key(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(TEAM_MANAGERS, "Revoking a key")
    before = await _key(call, inp, "revoke keys")
    after = await call.storage.keys.revoke(before.id, time.time())
    if after is None:
        raise NotFoundError(f"No key with id '{before.id}'.")
    call.forget_key(after)
    if before.revoked_at is None:
        await call.audit("key.revoke", "key", after.id, before.public(), after.public())
    return after.public()
