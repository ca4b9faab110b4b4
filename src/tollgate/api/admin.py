"""The admin API's route table and HTTP adapter: orgs, teams, users, keys and the audit log under ``/admin``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tollgate.api import admin_keys as keys
from tollgate.api import admin_tenants as tenants
from tollgate.api.admin_access import ADMINS, READERS, TEAM_MANAGERS, Actor, AdminCall, AdminInput
from tollgate.api.admin_input import json_list, query_int, query_time
from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.state.audit import MAX_QUERY_LIMIT, AuditQuery
from tollgate.types import JSONObject
from tollgate.wire.openai import parse_json_object

Operation = Callable[[AdminCall, AdminInput], Awaitable[JSONObject]]
Handler = Callable[[Gateway, Request, RequestContext], Awaitable[None]]

MAX_ADMIN_BODY = 64 * 1024
# Read by the route matcher in api/app.py, which puts ``{id}`` segments here.
PATH_PARAMS = "path_params"
VIEWERS = ("admin", "viewer")


async def audit_log(call: AdminCall, inp: AdminInput) -> JSONObject:
    call.actor.require(VIEWERS, "Reading the audit log")
    query = dict(inp.query)
    found = await call.storage.audit.query(
        AuditQuery(
            since=query_time(query, "since"),
            until=query_time(query, "until"),
            actor=query.get("actor") or None,
            target=query.get("target") or None,
            limit=query_int(query, "limit", 1000, MAX_QUERY_LIMIT),
            # An action, or a prefix ending in '*' (guardrail.* are the guardrail decisions).
            action=query.get("action") or None,
            exclude_action=query.get("exclude_action") or None,
        )
    )
    return json_list([r.public() for r in found])


@dataclass(frozen=True, slots=True)
class AdminRoute:
    method: str
    path: str  # a template: ``{id}`` stands for one path segment
    operation: Operation
    roles: tuple[str, ...]  # checked before the body is read, so a plain key learns nothing from a 400
    status: int = 200
    reads_body: bool = False

    def handler(self) -> Handler:
        route = self

        async def handle(gw: Gateway, request: Request, ctx: RequestContext) -> None:
            principal = await gw.authenticate(ctx, request.headers)
            actor = Actor.of(principal)
            actor.require(route.roles, f"{route.method} {route.path}")
            body = parse_json_object(await request.body(MAX_ADMIN_BODY)) if route.reads_body else {}
            params: dict[str, str] = request.scope.get(PATH_PARAMS) or {}
            call = AdminCall(gw.storage, actor, ctx.request_id, gw.authenticator)
            result = await route.operation(call, AdminInput(params.get("id"), body, request.query))
            await send_json(request.send, route.status, result, ctx.response_headers())

        return handle


def _crud(kind: str, module_ops: tuple[Operation, ...], write_roles: tuple[str, ...]) -> list[AdminRoute]:
    create, list_, get, update, delete = module_ops
    base = f"/admin/{kind}"
    return [
        AdminRoute("POST", base, create, write_roles, 201, reads_body=True),
        AdminRoute("GET", base, list_, READERS),
        AdminRoute("GET", base + "/{id}", get, READERS),
        AdminRoute("PATCH", base + "/{id}", update, write_roles, reads_body=True),
        AdminRoute("DELETE", base + "/{id}", delete, write_roles),
    ]


ROUTES: tuple[AdminRoute, ...] = (
    *_crud(
        "orgs",
        (tenants.create_org, tenants.list_orgs, tenants.get_org, tenants.update_org, tenants.delete_org),
        ADMINS,
    ),
    *_crud(
        "teams",
        (tenants.create_team, tenants.list_teams, tenants.get_team, tenants.update_team, tenants.delete_team),
        ADMINS,
    ),
    *_crud(
        "users",
        (tenants.create_user, tenants.list_users, tenants.get_user, tenants.update_user, tenants.delete_user),
        TEAM_MANAGERS,
    ),
    AdminRoute("POST", "/admin/keys", keys.create_key, TEAM_MANAGERS, 201, reads_body=True),
    AdminRoute("GET", "/admin/keys", keys.list_keys, READERS),
    AdminRoute("GET", "/admin/keys/{id}", keys.get_key, READERS),
    AdminRoute("PATCH", "/admin/keys/{id}", keys.update_key, TEAM_MANAGERS, reads_body=True),
    AdminRoute("POST", "/admin/keys/{id}/rotate", keys.rotate_key, TEAM_MANAGERS),
    AdminRoute("POST", "/admin/keys/{id}/revoke", keys.revoke_key, TEAM_MANAGERS),
    AdminRoute("GET", "/admin/audit", audit_log, VIEWERS),
)
