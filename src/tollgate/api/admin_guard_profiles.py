"""``GET /admin/guardrails/profiles``: the guardrail profiles in force, their guards in running order, and who
gets which; with ``key_id``, ``team`` or ``org``, the profile such a caller gets and why."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.config.guardrails import PROFILE_SECTIONS, GuardrailsConfig
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import NotFoundError, PermissionDeniedError
from tollgate.types import JSONObject, JSONValue

READERS = ("admin", "viewer")
# Config values never shown: they are, or may carry, secrets.
_SECRET_FIELDS = frozenset({"secret", "hash_salt"})
_REDACTED = "***"


def redacted(value: JSONValue, name: str = "") -> JSONValue:
    """A config dump with secrets (webhook secret and headers, the PII hash salt) replaced by ``***``."""
    if name in _SECRET_FIELDS and value is not None:
        return _REDACTED
    if name == "headers" and isinstance(value, dict):
        return dict.fromkeys(value, _REDACTED)
    if isinstance(value, dict):
        return {k: redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def describe(guardrails: GuardrailsConfig, order: dict[str, tuple[tuple[str, str], ...]]) -> JSONObject:
    profiles: list[JSONValue] = []
    for name in guardrails.profile_names():
        config = guardrails.profile(name).model_dump(mode="json", include=set(PROFILE_SECTIONS))
        guards: list[JSONValue] = [{"guard": g, "phase": phase} for g, phase in order.get(name, ())]
        profiles.append({"name": name, "guards": guards, "config": redacted(config)})
    assign: JSONObject = {kind: dict(table) for kind, table in guardrails.assigned().items()}
    return {"object": "guardrails.profiles", "profiles": profiles, "assign": assign}


def resolve(guardrails: GuardrailsConfig, key_id: str | None, team: str | None, org: str | None) -> JSONObject:
    """Which profile a caller with this key, team and org gets, and which assignment decided it."""
    profile, by, who = guardrails.assign.decide(key_id, team, org)
    return {"profile": profile, "by": by, "id": who}


async def profiles(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role not in READERS:
        raise PermissionDeniedError(
            f"Reading the guardrail profiles needs a key with role {' or '.join(READERS)}; this key has role "
            f"'{principal.role}'.",
            code="insufficient_role",
        )
    guardrails = gw.snapshot.config.guardrails
    order = {name: pipeline.guards for name, pipeline in gw.pipelines.by_profile.items()}
    body = describe(guardrails, order)
    body["config_version"] = gw.snapshot.version
    query = request.query
    key_id, team, org = query.get("key_id"), query.get("team"), query.get("org")
    if key_id is not None and team is None and org is None:
        # A key alone: its team and org as authentication would find them.
        record = await gw.keys.get(key_id)
        if record is None:
            raise NotFoundError(f"No key with id '{key_id}'.", param="key_id")
        team = record.team_id
        found = await gw.storage.tenants.teams.get(team) if team is not None else None
        org = found.org_id if found is not None else record.org_id
    if key_id is not None or team is not None or org is not None:
        body["resolved"] = resolve(guardrails, key_id, team, org)
    await send_json(request.send, 200, body, ctx.response_headers())
