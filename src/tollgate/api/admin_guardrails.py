"""``GET /admin/guardrails/events``: the guardrail decisions of the audit log, newest first, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from tollgate.api.admin_input import json_list, query_int, query_time
from tollgate.api.http import Request, send_bytes, send_json
from tollgate.context import Principal, RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.policies.guardrail_audit import ACTION_PREFIX
from tollgate.state.audit import MAX_QUERY_LIMIT, AuditQuery, AuditRecord
from tollgate.types import JSONObject, JSONValue

# Gateway-wide events for admin and viewer; a team_admin reads its own team's.
EVENT_READERS = ("admin", "viewer", "team_admin")
DEFAULT_LIMIT = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
CSV_COLUMNS = (
    "time",
    "guardrail",
    "action",
    "rules",
    "count",
    "phase",
    "request_id",
    "team_id",
    "org_id",
    "model",
    "endpoint",
    "status",
    "key_id",
    "payload_hash",
)


def event(r: AuditRecord) -> JSONObject:
    """One guardrail event as the API returns it: the audit record's snapshot, flattened."""
    after = r.after or {}
    return {
        "id": r.id,
        "at": r.at,
        "guardrail": after.get("guardrail"),
        "action": r.action.removeprefix(ACTION_PREFIX),
        "rules": after.get("rules") or [],
        "count": after.get("count"),
        "phase": after.get("phase"),
        "payload_hash": after.get("payload_hash"),
        "request_id": r.target_id,
        "team_id": after.get("team_id"),
        "org_id": after.get("org_id"),
        "model": after.get("model"),
        "endpoint": after.get("endpoint"),
        "status": after.get("status"),
        "actor": {"key_id": r.actor_key_id, "role": r.actor_role},
    }


def _name(query: dict[str, str], name: str) -> str | None:
    value = query.get(name) or None
    if value is not None and not _NAME.fullmatch(value):
        raise InvalidRequestError(f"'{name}' must be 1-64 letters, digits, '_', '.', ':' or '-'.", param=name)
    return value


def _request_id(query: dict[str, str]) -> str | None:
    value = query.get("request_id") or None
    if value is not None and len(value) > 200:
        raise InvalidRequestError("'request_id' must be at most 200 characters.", param="request_id")
    return value


def _team_scope(principal: Principal, team: str | None) -> str | None:
    if principal.role not in EVENT_READERS:
        raise PermissionDeniedError(
            f"Guardrail events need a key with role {' or '.join(EVENT_READERS)}; this key has role "
            f"'{principal.role}'.",
            code="insufficient_role",
        )
    if principal.role != "team_admin":
        return team
    own = principal.team_id
    if own is None:
        raise PermissionDeniedError(
            "This team_admin key belongs to no team, so it has no guardrail events to read.", code="insufficient_role"
        )
    if team is not None and team != own:
        raise PermissionDeniedError(
            f"A team_admin key can read the guardrail events of its own team ('{own}') only.", code="outside_team"
        )
    return own


def events_query(principal: Principal, query: dict[str, str]) -> AuditQuery:
    """The audit query of a request's filters; refuses what the caller may not read."""
    team = _team_scope(principal, _name(query, "team"))
    guardrail, action = _name(query, "guardrail"), _name(query, "action")
    fields: tuple[tuple[str, str], ...] = ()
    if guardrail is not None:
        fields += (("guardrail", guardrail),)
    if team is not None:
        fields += (("team_id", team),)
    return AuditQuery(
        since=query_time(query, "since"),
        until=query_time(query, "until"),
        target=_request_id(query),
        action=ACTION_PREFIX + (action if action is not None else "*"),
        fields=fields,
        limit=query_int(query, "limit", DEFAULT_LIMIT, MAX_QUERY_LIMIT),
    )


def _cell(value: JSONValue) -> str:
    """A CSV cell; text a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if value is None:
        return ""
    text = ";".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(events: list[JSONObject]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        at = e["at"]
        when = datetime.fromtimestamp(float(at), UTC).isoformat() if isinstance(at, int | float) else ""
        actor = e["actor"]
        key_id = actor.get("key_id") if isinstance(actor, dict) else None
        writer.writerow([when, *(_cell(e[c]) for c in CSV_COLUMNS[1:-2]), _cell(key_id), _cell(e["payload_hash"])])
    return out.getvalue()


async def events(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    query = dict(request.query)
    audit_query = events_query(principal, query)
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidRequestError(f"'format' must be json or csv, not {fmt!r}.", param="format")
    found = [event(r) for r in await gw.storage.audit.query(audit_query)]
    if fmt == "csv":
        headers = [
            (b"content-type", b"text/csv; charset=utf-8"),
            (b"content-disposition", b'attachment; filename="guardrail-events.csv"'),
            *ctx.response_headers(),
        ]
        await send_bytes(request.send, 200, to_csv(found).encode(), headers)
        return
    await send_json(request.send, 200, json_list(found), ctx.response_headers())
