"""Admin operations on organizations, teams and users (create, get, list, update, soft delete)."""

from __future__ import annotations

import time
from dataclasses import replace

from tollgate.api.admin_access import (
    ADMINS,
    READERS,
    TEAM_ADMIN_GRANTS,
    TEAM_MANAGERS,
    AdminCall,
    AdminInput,
    ConflictError,
)
from tollgate.api.admin_input import Body, json_list, query_flag
from tollgate.context import Scope
from tollgate.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from tollgate.state.tenants import DuplicateError, E, EntityStore, LimitSpec, Org, Team, User, new_id
from tollgate.types import JSONObject

_GOVERNED = ("allowed_models", "limits", "budget", "metadata")  # every entity and key has these


async def _create(store: EntityStore[E], entity: E) -> None:
    try:
        await store.create(entity)
    except DuplicateError as exc:
        raise ConflictError(str(exc), param=exc.field_name) from None


async def _update(store: EntityStore[E], entity: E) -> None:
    try:
        await store.update(entity)
    except DuplicateError as exc:
        raise ConflictError(str(exc), param=exc.field_name) from None


async def _save(call: AdminCall, store: EntityStore[E], kind: Scope, action: str, before: E, after: E) -> JSONObject:
    """Store a changed org, team or user, drop its keys from every replica's cache, and audit the change."""
    await _update(store, after)
    call.forget_scope(kind, after.id)
    await call.audit(f"{kind}.{action}", kind, after.id, before.public(), after.public())
    return after.public()


def _changed(entity: E, body: Body) -> E:
    """The entity with the name, allow-list, limits, budget and metadata present in an update applied.

    A field that is absent keeps its value; ``null`` clears it (no budget, no limits, every model)."""
    return replace(
        entity,
        name=body.text("name") or entity.name,
        allowed_models=(body.models() or ()) if body.has("allowed_models") else entity.allowed_models,
        limits=(body.limits() or LimitSpec()) if body.has("limits") else entity.limits,
        budget=body.budget() if body.has("budget") else entity.budget,
        metadata=(body.metadata() or {}) if body.has("metadata") else entity.metadata,
    )


# --- organizations ------------------------------------------------------------------------------------


async def live_org(call: AdminCall, org_id: str, param: str | None = None) -> Org:
    org = await call.storage.tenants.orgs.get(org_id)
    if org is None or org.deleted:
        raise NotFoundError(f"No organization with id '{org_id}'.", param=param)
    return org


async def create_org(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(ADMINS, "Creating an organization")
    body = Body(inp.body, ("id", "name", *_GOVERNED))
    org = Org(
        id=body.ident("id") or new_id("org"),
        name=body.text("name", required=True) or "",
        created_at=time.time(),
        allowed_models=body.models() or (),
        limits=body.limits() or LimitSpec(),
        budget=body.budget(),
        metadata=body.metadata() or {},
    )
    await _create(call.storage.tenants.orgs, org)
    await call.audit("org.create", "org", org.id, None, org.public())
    return org.public()


async def list_orgs(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Listing organizations")
    orgs = await call.storage.tenants.orgs.list(include_deleted=query_flag(dict(inp.query), "include_deleted"))
    if call.actor.role == "team_admin":
        orgs = [o for o in orgs if o.id == call.actor.org_id]
    return json_list([o.public() for o in orgs])


async def get_org(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Reading an organization")
    org = await live_org(call, inp.target)
    if call.actor.role == "team_admin" and org.id != call.actor.org_id:
        raise PermissionDeniedError("A team_admin key can read only its own organization.", code="outside_team")
    return org.public()


async def update_org(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(ADMINS, "Changing an organization")
    body = Body(inp.body, ("name", *_GOVERNED))
    before = await live_org(call, inp.target)
    after = _changed(before, body)
    return await _save(call, call.storage.tenants.orgs, "org", "update", before, after)


async def delete_org(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(ADMINS, "Deleting an organization")
    before = await live_org(call, inp.target)
    after = replace(before, deleted_at=time.time())
    # Soft delete: every key under the org is refused from now on (its teams and users stay for the record).
    return await _save(call, call.storage.tenants.orgs, "org", "delete", before, after)


# --- teams --------------------------------------------------------------------------------------------


async def live_team(call: AdminCall, team_id: str, param: str | None = None) -> Team:
    team = await call.storage.tenants.teams.get(team_id)
    if team is None or team.deleted:
        raise NotFoundError(f"No team with id '{team_id}'.", param=param)
    return team


async def create_team(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(ADMINS, "Creating a team")
    body = Body(inp.body, ("id", "org_id", "name", *_GOVERNED))
    org = await live_org(call, body.ident("org_id", required=True) or "", "org_id")
    team = Team(
        id=body.ident("id") or new_id("team"),
        org_id=org.id,
        name=body.text("name", required=True) or "",
        created_at=time.time(),
        allowed_models=body.models() or (),
        budget=body.budget(),
        metadata=body.metadata() or {},
        limits=body.limits() or LimitSpec(),
    )
    await _create(call.storage.tenants.teams, team)
    await call.audit("team.create", "team", team.id, None, team.public())
    return team.public()


async def list_teams(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Listing teams")
    query = dict(inp.query)
    teams = await call.storage.tenants.teams.list(query.get("org_id"), query_flag(query, "include_deleted"))
    if call.actor.role == "team_admin":
        teams = [t for t in teams if t.id == call.actor.team_id]
    return json_list([t.public() for t in teams])


async def get_team(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Reading a team")
    team = await live_team(call, inp.target)
    call.actor.require_team(team.id, "read teams")
    return team.public()


async def update_team(call: AdminCall, inp: AdminInput) -> JSONObject:
    # A team's own limits and budget are what bound its team_admin, so only an admin sets them.
    call.actor.require(ADMINS, "Changing a team")
    body = Body(inp.body, ("name", *_GOVERNED))
    before = await live_team(call, inp.target)
    after = _changed(before, body)
    return await _save(call, call.storage.tenants.teams, "team", "update", before, after)


async def delete_team(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(ADMINS, "Deleting a team")
    before = await live_team(call, inp.target)
    after = replace(before, deleted_at=time.time())
    # The team's keys now get 401 saying the team was deleted: at once here, within the cache TTL elsewhere.
    return await _save(call, call.storage.tenants.teams, "team", "delete", before, after)


# --- users --------------------------------------------------------------------------------------------


async def live_user(call: AdminCall, user_id: str, param: str | None = None) -> User:
    user = await call.storage.tenants.users.get(user_id)
    if user is None or user.deleted:
        raise NotFoundError(f"No user with id '{user_id}'.", param=param)
    return user


def _check_grant(call: AdminCall, role: str) -> None:
    if call.actor.role == "team_admin" and role not in TEAM_ADMIN_GRANTS:
        raise PermissionDeniedError(
            f"A team_admin key can give only the roles {', '.join(TEAM_ADMIN_GRANTS)}; '{role}' needs an admin key.",
            param="role",
            code="insufficient_role",
        )


async def create_user(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(TEAM_MANAGERS, "Creating a user")
    body = Body(inp.body, ("id", "team_id", "email", "name", "role", *_GOVERNED))
    # Every field is validated before any lookup, so a malformed body is a 400 whatever it references.
    team_id = body.ident("team_id") or (call.actor.team_id if call.actor.role == "team_admin" else None)
    user_id = body.ident("id") or new_id("user")
    email = body.email()
    name = body.text("name") or email or user_id
    role = body.role() or "user"
    settings = (body.models() or (), body.limits() or LimitSpec(), body.budget(), body.metadata() or {})
    if team_id is None:
        raise InvalidRequestError("'team_id' is required: a user belongs to a team.", param="team_id")
    call.actor.require_team(team_id, "create users")
    _check_grant(call, role)
    team = await live_team(call, team_id, "team_id")
    user = User(
        id=user_id,
        team_id=team.id,
        org_id=team.org_id,
        email=email,
        name=name,
        role=role,
        created_at=time.time(),
        allowed_models=settings[0],
        limits=settings[1],
        budget=settings[2],
        metadata=settings[3],
    )
    await _create(call.storage.tenants.users, user)
    await call.audit("user.create", "user", user.id, None, user.public())
    return user.public()


async def list_users(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Listing users")
    query = dict(inp.query)
    team_id = query.get("team_id")
    if call.actor.role == "team_admin":
        call.actor.require_team(team_id or call.actor.team_id, "list users")
        team_id = call.actor.team_id
    users = await call.storage.tenants.users.list(team_id, query_flag(query, "include_deleted"))
    return json_list([u.public() for u in users])


async def get_user(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(READERS, "Reading a user")
    user = await live_user(call, inp.target)
    call.actor.require_team(user.team_id, "read users")
    return user.public()


async def _managed_user(call: AdminCall, inp: AdminInput, what: str) -> User:
    call.actor.require(TEAM_MANAGERS, what.capitalize())
    user = await live_user(call, inp.target)
    call.actor.require_team(user.team_id, what)
    _check_grant(call, user.role)  # a team_admin cannot touch an admin's or viewer's account
    return user


async def update_user(call: AdminCall, inp: AdminInput) -> JSONObject:
    before = await _managed_user(call, inp, "change users")
    body = Body(inp.body, ("name", "email", "role", *_GOVERNED))
    role = body.role() or before.role
    _check_grant(call, role)
    after = replace(_changed(before, body), email=body.email() if body.has("email") else before.email, role=role)
    return await _save(call, call.storage.tenants.users, "user", "update", before, after)


async def delete_user(call: AdminCall, inp: AdminInput) -> JSONObject:
    before = await _managed_user(call, inp, "delete users")
    after = replace(before, deleted_at=time.time())
    return await _save(call, call.storage.tenants.users, "user", "delete", before, after)
