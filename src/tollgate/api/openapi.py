"""``GET /admin/openapi.json``: the gateway's HTTP API as an OpenAPI 3.1 document.

One entry in ``OPERATIONS`` per route the app serves; a test fails when a route has no entry (or an entry
has no route). Roles, success status and whether a body is read come from ``admin.ROUTES`` (and the role
constants of the other admin modules); limits, enums and patterns from ``admin_input`` and the stores.

To describe a new endpoint: add an ``Op`` to ``OPERATIONS`` keyed by ``(METHOD, path template)``; give it a
``response`` schema (add a component to ``_SCHEMAS`` when it is shared) and, when it reads a body, ``body``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import orjson

import tollgate
from tollgate.api import (
    admin,
    admin_cache,
    admin_guard_profiles,
    admin_guardrails,
    admin_overview,
    admin_shadow,
    admin_spend,
)
from tollgate.api.admin_access import ADMINS
from tollgate.api.admin_input import LIMIT_CEILINGS, MAX_BUDGET_USD, MAX_EXPIRY_SECONDS
from tollgate.api.http import JSON_HEADERS, Request, send_bytes
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.state.audit import MAX_QUERY_LIMIT
from tollgate.state.ledger import GROUP_BYS
from tollgate.state.tenants import BUDGET_PERIODS, LIMIT_FIELDS, ROLES
from tollgate.types import JSONObject, JSONValue

PATH = "/admin/openapi.json"
ROLES_EXTENSION = "x-tollgate-roles"  # the key roles an operation accepts; absent: no key needed


def _ref(name: str) -> JSONObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: JSONObject) -> JSONObject:
    return {"anyOf": [schema, {"type": "null"}]}


def _list_of(name: str) -> JSONObject:
    return {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref(name)}},
    }


def _obj(required: tuple[str, ...], props: JSONObject, *, closed: bool = False) -> JSONObject:
    schema: JSONObject = {"type": "object", "required": list[JSONValue](required), "properties": props}
    if closed:
        schema["additionalProperties"] = False
    return schema


_STR: JSONObject = {"type": "string"}
_INT: JSONObject = {"type": "integer"}
_NUM: JSONObject = {"type": "number"}
_TIME: JSONObject = {"type": "number", "description": "Unix time, seconds."}
_ID: JSONObject = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}

_LIMITS: JSONObject = {
    "type": "object",
    "additionalProperties": False,
    "properties": {f: _nullable({"type": "integer", "minimum": 1, "maximum": LIMIT_CEILINGS[f]}) for f in LIMIT_FIELDS},
}
_BUDGET: JSONObject = _obj(
    ("limit_usd",),
    {
        "limit_usd": {"type": "number", "minimum": 0, "maximum": MAX_BUDGET_USD},
        "period": {"enum": list[JSONValue](BUDGET_PERIODS), "default": "monthly"},
    },
    closed=True,
)
_GOVERNED_OUT: JSONObject = {
    "allowed_models": {"type": "array", "items": _STR},
    "limits": _ref("Limits"),
    "budget": _nullable(_ref("Budget")),
    "metadata": {"type": "object"},
}
_ENTITY_OUT: JSONObject = {
    "object": _STR,
    "id": _STR,
    "name": _STR,
    "created_at": _TIME,
    "deleted_at": _nullable(_TIME),
    **_GOVERNED_OUT,
}
_ENTITY_REQUIRED = ("object", "id", "name", "created_at", "deleted_at", "allowed_models", "limits", "budget")
_KEY_OUT: JSONObject = {
    "id": _STR,
    "key_hint": _STR,
    "name": _STR,
    "user_id": _nullable(_STR),
    "team_id": _nullable(_STR),
    "org_id": _nullable(_STR),
    "role": {"enum": list[JSONValue](ROLES)},
    "created_at": _TIME,
    "expires_at": _nullable(_TIME),
    "revoked_at": _nullable(_TIME),
    "rotated_at": _nullable(_TIME),
    **_GOVERNED_OUT,
}
_KEY_REQUIRED = ("id", "key_hint", "name", "role", "created_at", "expires_at", "revoked_at", "limits", "budget")
_TOTALS: JSONObject = {
    "requests": _INT,
    "errors": _INT,
    "input_tokens": _INT,
    "output_tokens": _INT,
    "cost_usd": {"type": "string", "description": "US dollars as an exact decimal string."},
    "cost_nanousd": _INT,
    "cache_hits": _INT,
    "cost_saved_usd": {
        "type": "string",
        "description": "What cache hits would have cost at the model's price (they cost 0), exact decimal USD.",
    },
    "cost_saved_nanousd": _INT,
    "latency_mean_ms": _nullable(_NUM),
    "latency_p50_ms": _nullable(
        {"type": "number", "description": "Estimated from the ledger's latency buckets (linear within a bucket)."}
    ),
    "latency_p95_ms": _nullable(
        {"type": "number", "description": "Estimated from the ledger's latency buckets (linear within a bucket)."}
    ),
}

# Shared schemas, under ``components/schemas``.
_SCHEMAS: dict[str, JSONObject] = {
    "Error": _obj(
        ("error",),
        {
            "error": _obj(
                ("message", "type", "param", "code"),
                {"message": _STR, "type": _STR, "param": _nullable(_STR), "code": _nullable(_STR)},
            )
        },
    ),
    "Limits": _LIMITS,
    "Budget": _BUDGET,
    "Organization": _obj(_ENTITY_REQUIRED, {**_ENTITY_OUT, "object": {"const": "organization"}}),
    "Team": _obj((*_ENTITY_REQUIRED, "org_id"), {**_ENTITY_OUT, "object": {"const": "team"}, "org_id": _STR}),
    "User": _obj(
        (*_ENTITY_REQUIRED, "team_id", "role"),
        {
            **_ENTITY_OUT,
            "object": {"const": "user"},
            "team_id": _nullable(_STR),
            "org_id": _nullable(_STR),
            "email": _nullable(_STR),
            "role": {"enum": list[JSONValue](ROLES)},
        },
    ),
    "Key": _obj(_KEY_REQUIRED, _KEY_OUT),
    "KeyWithSecret": _obj(
        (*_KEY_REQUIRED, "key"),
        {**_KEY_OUT, "key": {"type": "string", "description": "The secret: shown in this answer only."}},
    ),
    "AuditRecord": _obj(
        ("id", "at", "actor", "action", "target", "before", "after", "request_id"),
        {
            "id": _STR,
            "at": _TIME,
            "actor": _obj(("key_id", "role"), {"key_id": _STR, "role": _STR}),
            "action": {"type": "string", "examples": ["key.create", "team.update", "reload_config"]},
            "target": _obj(("type", "id"), {"type": _STR, "id": _STR}),
            "before": _nullable({"type": "object"}),
            "after": _nullable({"type": "object"}),
            "request_id": _nullable(_STR),
        },
    ),
    "SpendLine": {
        **_obj(tuple(_TOTALS), {**_TOTALS, "cached_tokens": _INT}),
        "description": "One group's totals; the group's value is under the key named by `by` (null: none).",
    },
    "SpendReport": _obj(
        ("object", "by", "team", "since", "until", "currency", "data", "total"),
        {
            "object": {"const": "spend_report"},
            "by": {"enum": list[JSONValue](GROUP_BYS)},
            "team": _nullable(_STR),
            "since": {"type": "string", "format": "date"},
            "until": {"type": "string", "format": "date"},
            "currency": {"const": "USD"},
            "data": {"type": "array", "items": _ref("SpendLine")},
            "total": _ref("SpendLine"),
        },
    ),
    "CacheStats": _obj(
        ("enabled", "entries"),
        {
            "enabled": {"type": "boolean"},
            "backend": _STR,
            "entries": _INT,
            "bytes": _INT,
            "process": {"type": "object", "description": "Hits, misses, stores, skips and savings of this process."},
            "by_model": {"type": "object"},
            "by_scope": {"type": "object"},
            "ledger": _obj(
                ("since", "until", "requests", "hits", "usd_saved", "nanousd_saved"),
                {
                    "since": {"type": "string", "format": "date"},
                    "until": {"type": "string", "format": "date"},
                    "requests": _INT,
                    "hits": _INT,
                    "usd_saved": {"type": "string", "description": "Exact decimal USD, from the shared ledger."},
                    "nanousd_saved": _INT,
                },
            ),
        },
    ),
    "CacheInvalidation": _obj(
        ("invalidated", "deleted"),
        {"invalidated": {"type": "string", "examples": ["all", "team:payments"]}, "deleted": _INT},
    ),
    "ReloadResult": _obj(
        ("object", "config_version", "previous_version", "applied", "restart_required"),
        {
            "object": {"const": "config.reload"},
            "config_version": _STR,
            "previous_version": _STR,
            "applied": {"type": "array", "items": _STR},
            "restart_required": {"type": "array", "items": _STR},
        },
    ),
    "Overview": _obj(
        ("object", "since", "until", "days", "total", "latency", "config_version"),
        {
            "object": {"const": "overview"},
            "since": {"type": "string", "format": "date"},
            "until": {"type": "string", "format": "date"},
            "days": {"type": "array", "items": _obj(("day", *_TOTALS), {"day": _STR, **_TOTALS})},
            "total": _obj(tuple(_TOTALS), _TOTALS),
            "latency": _nullable({"type": "object", "description": "This process's request latency (ms)."}),
            "config_version": _STR,
        },
    ),
    "ModelsView": _obj(
        ("object", "config_version", "providers", "routes", "direct"),
        {
            "object": {"const": "models"},
            "config_version": _STR,
            "providers": {"type": "array", "items": {"type": "object"}},
            "routes": {"type": "array", "items": {"type": "object"}},
            "direct": {"type": "array", "items": {"type": "object"}},
        },
    ),
    "RouteExplanation": _obj(
        ("model", "strategy", "chosen", "outcome", "candidates", "rules", "config_version"),
        {
            "model": _STR,
            "logical": {"type": "boolean"},
            "strategy": _STR,
            "strategy_reason": _STR,
            "chosen": _nullable(_STR),
            "outcome": _STR,
            "candidates": {"type": "array", "items": {"type": "object"}},
            "rules": {"type": "array", "items": {"type": "object"}},
            "residency_regions": {"type": "object"},
            "config_version": _STR,
        },
    ),
    "Health": _obj(("status",), {"status": {"const": "ok"}}),
    "Readiness": _obj(
        ("status", "checks", "config_version"),
        {
            "status": {"enum": ["ready", "not_ready"]},
            "reason": {"enum": ["draining", "storage_unavailable"]},
            "checks": {"type": "object", "additionalProperties": _STR},
            "config_version": _STR,
        },
    ),
    "ChatRequest": {
        **_obj(("model", "messages"), {"model": _STR, "messages": {"type": "array", "items": {"type": "object"}}}),
        "description": "An OpenAI chat completion request (see the OpenAI API reference for every field).",
    },
    "Session": _obj(
        ("key_id", "name", "role", "team_id", "org_id", "session"),
        {
            "key_id": {"type": "string", "description": "The key's id; sso:<email> for a console session."},
            "name": _STR,
            "role": {"enum": list[JSONValue](ROLES)},
            "team_id": _nullable(_STR),
            "org_id": _nullable(_STR),
            "session": _nullable(
                _obj(("id", "email", "expires_at"), {"id": _STR, "email": _STR, "expires_at": _TIME}),
            ),
        },
    ),
    "SsoInfo": _obj(
        ("enabled",),
        {"enabled": {"type": "boolean"}, "label": _STR, "login_url": _STR},
    ),
}

# Request-body fields of the admin API, with the limits ``admin_input.Body`` enforces.
_FIELDS: dict[str, JSONObject] = {
    "id": {**_ID, "description": "Generated when absent."},
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "org_id": _ID,
    "team_id": _ID,
    "user_id": _ID,
    "email": {"type": "string", "format": "email", "maxLength": 320},
    "role": {"enum": list[JSONValue](ROLES)},
    "allowed_models": _nullable(
        {"type": "array", "maxItems": 256, "items": {"type": "string", "minLength": 1, "maxLength": 256}}
    ),
    "limits": _nullable(_ref("Limits")),
    "budget": _nullable(_ref("Budget")),
    "metadata": _nullable({"type": "object", "description": "Any JSON object up to 16 KB."}),
    "expires_in_seconds": _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_EXPIRY_SECONDS}),
    "expires_at": _nullable({"type": "number", "description": "Unix time, at most ten years ahead."}),
}
_GOVERNED = ("allowed_models", "limits", "budget", "metadata")


def _body(*fields: str, required: tuple[str, ...] = ()) -> JSONObject:
    """A closed object: ``admin_input.Body`` refuses any field not listed."""
    return _obj(required, {f: _FIELDS[f] for f in fields}, closed=True)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: JSONObject
    description: str = ""


@dataclass(frozen=True, slots=True)
class Op:
    summary: str
    tag: str
    response: JSONObject | None  # the success body's schema (None: see ``media``)
    roles: tuple[str, ...] | None = None  # None: no key needed; admin.ROUTES entries take the route's roles
    body: JSONObject | None = None
    query: tuple[Param, ...] = ()
    status: int = 200  # admin.ROUTES entries take the route's status
    description: str = ""
    media: str = "application/json"
    errors: tuple[int, ...] = ()  # beyond those every operation of its kind can answer


_DELETED = Param("include_deleted", {"type": "boolean", "default": False}, "Include soft-deleted entries.")
_SINCE = Param("since", _STR, "Unix time or ISO 8601 date-time (UTC when no zone is given).")
_UNTIL = Param("until", _STR, "Unix time or ISO 8601 date-time.")
_OPEN_BODY: JSONObject = {"type": "object"}
_MODEL_CALLS: tuple[tuple[str, str, str, JSONObject | None], ...] = (
    ("POST", "/chat/completions", "Chat completion (stream with stream: true)", _ref("ChatRequest")),
    ("POST", "/embeddings", "Embeddings", {"type": "object", "required": ["model", "input"]}),
    ("GET", "/models", "Models this key may call", None),
    ("POST", "/completions", "Legacy text completion", {"type": "object", "required": ["model", "prompt"]}),
)
_MODEL_OP = "A model call: OpenAI-compatible (see the OpenAI API reference); any key may call it."


def _crud(
    kind: str, tag: str, schema: str, create: JSONObject, update: JSONObject, list_q: tuple[Param, ...]
) -> dict[tuple[str, str], Op]:
    base = f"/admin/{kind}"
    one = f"{base}/{{id}}"
    one_of = {"Organization": "an organization"}.get(schema, f"a {schema.lower()}")
    return {
        ("POST", base): Op(f"Create {one_of}", tag, _ref(schema), body=create, errors=(404, 409)),
        ("GET", base): Op(f"List {tag.lower()}", tag, _list_of(schema), query=(*list_q, _DELETED)),
        ("GET", one): Op(f"Read {one_of}", tag, _ref(schema)),
        ("PATCH", one): Op(
            f"Change {one_of}",
            tag,
            _ref(schema),
            body=update,
            description="Only the fields sent change; null clears.",
            errors=(409,),
        ),
        ("DELETE", one): Op(
            f"Soft-delete {one_of}",
            tag,
            _ref(schema),
            description="Answers the entity with deleted_at set.",
        ),
    }


OPERATIONS: dict[tuple[str, str], Op] = {
    # --- tenants, keys, audit (admin.ROUTES) ---
    **_crud(
        "orgs",
        "Organizations",
        "Organization",
        _body("id", "name", *_GOVERNED, required=("name",)),
        _body("name", *_GOVERNED),
        (),
    ),
    **_crud(
        "teams",
        "Teams",
        "Team",
        _body("id", "org_id", "name", *_GOVERNED, required=("org_id", "name")),
        _body("name", *_GOVERNED),
        (Param("org_id", _STR, "Only this organization's teams."),),
    ),
    **_crud(
        "users",
        "Users",
        "User",
        _body("id", "team_id", "email", "name", "role", *_GOVERNED),
        _body("name", "email", "role", *_GOVERNED),
        (Param("team_id", _STR, "Only this team's users."),),
    ),
    ("POST", "/admin/keys"): Op(
        "Create a virtual key",
        "Keys",
        _ref("KeyWithSecret"),
        body=_body("user_id", "team_id", "name", "role", *_GOVERNED, "expires_in_seconds", "expires_at"),
        description="The answer's `key` is the only copy of the secret.",
        errors=(404, 409),
    ),
    ("GET", "/admin/keys"): Op(
        "List keys (masked)",
        "Keys",
        _list_of("Key"),
        query=(
            Param("team_id", _STR),
            Param("user_id", _STR),
            Param("include_revoked", {"type": "boolean", "default": True}, "false: leave revoked keys out."),
        ),
    ),
    ("GET", "/admin/keys/{id}"): Op("Read a key (masked)", "Keys", _ref("Key")),
    ("PATCH", "/admin/keys/{id}"): Op(
        "Change a key",
        "Keys",
        _ref("Key"),
        body=_body("name", "role", *_GOVERNED, "expires_in_seconds", "expires_at"),
        errors=(409,),
    ),
    ("POST", "/admin/keys/{id}/rotate"): Op(
        "Rotate a key",
        "Keys",
        _ref("KeyWithSecret"),
        description="A new secret; the old one stops working.",
        errors=(409,),
    ),
    ("POST", "/admin/keys/{id}/revoke"): Op("Revoke a key", "Keys", _ref("Key"), errors=(409,)),
    ("GET", "/admin/audit"): Op(
        "Query the audit log (newest first)",
        "Audit",
        _list_of("AuditRecord"),
        query=(
            _SINCE,
            _UNTIL,
            Param("actor", _STR, "The acting key's id."),
            Param("target", _STR, "The target's id."),
            Param("action", _STR, "Only this action (exact, or a prefix ending in '*', e.g. guardrail.*)."),
            Param("exclude_action", _STR, "Leave out this action (exact, or a prefix ending in '*')."),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT, "default": 1000}),
        ),
    ),
    ("GET", "/admin/guardrails/events"): Op(
        "Guardrail decisions (newest first)",
        "Audit",
        {
            "type": "object",
            "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {"type": "object"}}},
        },
        roles=admin_guardrails.EVENT_READERS,
        query=(
            Param("guardrail", _STR, "Only this guard (pii, injection, code, ...)."),
            Param("action", _STR, "Only this action (mask, redact, hash, block, flag, ...)."),
            Param("team", _STR, "Only this team's requests (a team_admin always sees its own team only)."),
            Param("request_id", _STR, "Only this request's decisions."),
            _SINCE,
            _UNTIL,
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT}),
            Param("format", {"type": "string", "enum": ["json", "csv"], "default": "json"}),
        ),
        description="Each decision: guard, action, rules or entity types, count, phase, payload hash (never the "
        "text), request id, team, model, status.",
    ),
    ("GET", "/admin/guardrails/profiles"): Op(
        "Guardrail profiles and who gets which",
        "Config",
        {
            "type": "object",
            "properties": {
                "object": {"type": "string"},
                "config_version": {"type": "string"},
                "profiles": {"type": "array", "items": {"type": "object"}},
                "assign": {"type": "object"},
                "resolved": {"type": "object"},
            },
        },
        roles=admin_guard_profiles.READERS,
        query=(
            Param("key_id", _STR, "Resolve the profile of this key (its team and org are looked up)."),
            Param("team", _STR, "Resolve the profile of a caller in this team."),
            Param("org", _STR, "Resolve the profile of a caller in this org."),
        ),
        description="Each profile with its guards in running order and its complete config (secrets shown as "
        "***); the assignments by org, team and key; with key_id, team or org, the profile such a caller gets "
        "and which assignment decided it.",
    ),
    # --- reports, cache, config, routing ---
    ("GET", "/admin/spend"): Op(
        "Spend report (chargeback)",
        "Reports",
        _ref("SpendReport"),
        roles=admin_spend.SPEND_READERS,
        query=(
            Param("by", {"enum": list[JSONValue](GROUP_BYS), "default": "user"}),
            Param("since", {"type": "string", "format": "date"}, "First day (UTC); default the 1st of this month."),
            Param("until", {"type": "string", "format": "date"}, "Last day included; default today."),
            Param("team", _STR, "Only this team (a team_admin: always its own)."),
            Param("format", {"enum": ["json", "csv"], "default": "json"}, "csv: a text/csv download."),
        ),
        description="A team_admin reads its own team's spend only.",
    ),
    ("GET", "/admin/overview"): Op(
        "Requests, errors, tokens, spend, cache savings and latency per day",
        "Reports",
        _ref("Overview"),
        roles=admin_overview.READERS,
        query=(
            Param(
                "days",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": admin_overview.MAX_DAYS,
                    "default": admin_overview.DEFAULT_DAYS,
                },
            ),
        ),
    ),
    ("GET", "/admin/models"): Op(
        "Models, routes and deployment health", "Routing", _ref("ModelsView"), roles=admin_overview.READERS
    ),
    ("POST", "/v1/route/explain"): Op(
        "Explain the routing decision for a chat request",
        "Routing",
        _ref("RouteExplanation"),
        roles=ADMINS,
        body=_ref("ChatRequest"),
        description="Runs model resolution and the routing rules only: no provider is called, no limit consumed.",
        errors=(404, 413),
    ),
    ("GET", "/admin/cache/stats"): Op(
        "Response cache statistics",
        "Cache",
        _ref("CacheStats"),
        roles=admin_cache.STATS_READERS,
        query=(
            Param(
                "days",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": admin_overview.MAX_DAYS,
                    "default": admin_cache.LEDGER_DAYS,
                },
                "The window (UTC days, today included) of the ledger's hits and savings.",
            ),
        ),
    ),
    ("POST", "/admin/cache/invalidate"): Op(
        "Invalidate cached responses",
        "Cache",
        _ref("CacheInvalidation"),
        roles=ADMINS,
        body={
            "type": "object",
            "description": 'Either {"all": true} or exactly one selector.',
            "properties": {
                "all": {"type": "boolean"},
                **{s: {"type": "string", "minLength": 1} for s in admin_cache.SELECTORS},
            },
        },
    ),
    ("POST", "/admin/cache/warm"): Op(
        "Store prepared answers in the response cache",
        "Cache",
        {
            "type": "object",
            "required": ["stored", "skipped", "scope"],
            "properties": {
                "stored": {"type": "integer", "minimum": 0},
                "skipped": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "reason"],
                        "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}},
                    },
                },
                "scope": {"type": "string"},
            },
        },
        roles=ADMINS,
        body={
            "type": "object",
            "required": ["entries"],
            "properties": {
                "entries": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": admin_cache.WARM_MAX_ENTRIES,
                    "items": {
                        "type": "object",
                        "required": ["model", "answer"],
                        "properties": {
                            "model": {"type": "string", "minLength": 1},
                            "messages": {"type": "array", "items": {"type": "object"}, "minItems": 1},
                            "prompt": {"type": "string", "minLength": 1},
                            "answer": {"type": "string", "minLength": 1},
                            "params": {"type": "object"},
                        },
                    },
                },
                "org": {"type": "string", "minLength": 1},
                "team": {"type": "string", "minLength": 1},
                "key_id": {"type": "string", "minLength": 1},
            },
        },
        description="Each entry answers requests with the same model, messages and parameters, in the scope "
        "given (org, team or key_id, as cache.scope says). See docs/caching.md, Warming up.",
    ),
    ("GET", "/admin/shadow"): Op(
        "Shadow traffic report: candidate against primary",
        "Routing",
        {"type": "object"},
        roles=admin_shadow.READERS,
        query=(Param("model", _STR, "Only this logical model's shadow."),),
        description="Latency, tokens, cost, errors and answer similarity of each shadowed model's candidate "
        "deployment against the primary (this process's calls; docs/routing.md).",
    ),
    ("POST", "/admin/reload"): Op(
        "Reload the config file",
        "Config",
        _ref("ReloadResult"),
        roles=ADMINS,
        description="An invalid file is refused (400, code invalid_config) and the running config stays.",
    ),
    ("GET", PATH): Op("This document", "Meta", {"type": "object"}, description="Readable without a key."),
    # --- probes, metrics, UI ---
    ("GET", "/health"): Op("Liveness", "Health", _ref("Health")),
    ("GET", "/health/live"): Op("Liveness (alias)", "Health", _ref("Health")),
    ("GET", "/health/ready"): Op(
        "Readiness",
        "Health",
        _ref("Readiness"),
        description="503 with status not_ready when draining or storage is down.",
    ),
    ("GET", "/metrics"): Op("Prometheus metrics", "Health", None, media="text/plain"),
    ("GET", "/ui"): Op("Admin web UI", "UI", None, media="text/html"),
    ("GET", "/ui/{asset}"): Op("Admin web UI files", "UI", None, media="application/octet-stream", errors=(404,)),
    # --- single sign-on for the UI, and the console's own session (api/sso.py; docs/ui.md) ---
    ("GET", "/auth/sso"): Op(
        "Whether the UI offers single sign-on", "UI", _ref("SsoInfo"), description="Readable without a key."
    ),
    ("GET", "/auth/sso/login"): Op(
        "Start a single sign-on",
        "UI",
        None,
        status=303,
        media="text/plain",
        errors=(404,),
        description="303 to the identity provider's authorization endpoint (code flow with PKCE), setting a "
        "signed HttpOnly cookie with the attempt's state, nonce and verifier. 404 when sso.enabled is off.",
    ),
    ("GET", "/auth/sso/callback"): Op(
        "Finish a single sign-on",
        "UI",
        None,
        status=303,
        media="text/plain",
        errors=(404,),
        description="Where the provider sends the browser back (query: code and state, or error). Always 303 "
        "to /ui: with #sso=<session token> when the ID token checks out and the email is verified and in "
        "sso.allowed_domains, else with #sso_error=<why>.",
    ),
    ("GET", "/admin/session"): Op(
        "Who the bearer is",
        "Access",
        _ref("Session"),
        roles=ROLES,
        description="Any key or console session: its role and team, so the UI shows what that role may use.",
    ),
    ("DELETE", "/admin/session"): Op(
        "Sign out of a console session",
        "Access",
        _obj(("signed_out", "session"), {"signed_out": {"const": True}, "session": _STR}),
        roles=ROLES,
        errors=(400,),
        description="Ends the single sign-on session sent as the bearer, on every replica. 400 (code "
        "not_a_session) for an API key: revoke a key instead.",
    ),
    # --- model calls (described briefly: their wire formats are OpenAI's and Anthropic's) ---
    **{
        (method, prefix + path): Op(
            summary, "Models", {"type": "object"}, roles=ROLES, body=body, description=_MODEL_OP
        )
        for prefix in ("/v1", "")
        for method, path, summary, body in _MODEL_CALLS
    },
    ("POST", "/v1/messages"): Op(
        "Anthropic Messages",
        "Models",
        {"type": "object"},
        roles=ROLES,
        body=_OPEN_BODY,
        description="Anthropic-compatible; errors in Anthropic's shape.",
    ),
    ("POST", "/v1/messages/count_tokens"): Op(
        "Anthropic token count",
        "Models",
        {"type": "object"},
        roles=ROLES,
        body=_OPEN_BODY,
        description="Anthropic-compatible; errors in Anthropic's shape.",
    ),
    ("POST", "/chat"): Op(
        "Simple chat",
        "Models",
        {"type": "object"},
        roles=ROLES,
        body=_OPEN_BODY,
        description="A minimal front door for scripts (see the README).",
    ),
}

_ERROR_TEXT = {
    400: "Malformed JSON, or a malformed or unknown field (`param` names it).",
    401: "Missing, unknown, revoked or expired key.",
    403: "The key's role does not allow this (`code`: insufficient_role or outside_team).",
    404: "Unknown or deleted id (`param` set when it came from the body).",
    409: "The id or unique name is taken, or the target's state forbids the change.",
    413: "The body is too large.",
}


def _operation(method: str, path: str, op: Op, route: admin.AdminRoute | None) -> JSONObject:
    roles = route.roles if route is not None else op.roles
    status = route.status if route is not None else op.status
    out: JSONObject = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_"),
        "summary": op.summary,
        "tags": [op.tag],
    }
    description = op.description
    if roles is not None:
        out["security"] = [{"bearer": []}]
        out[ROLES_EXTENSION] = list[JSONValue](roles)
        description = f"{description}\n\nRoles: {', '.join(roles)}.".strip()
    else:
        out["security"] = []
    if description:
        out["description"] = description
    params: list[JSONValue] = [
        {"name": seg[1:-1], "in": "path", "required": True, "schema": _STR}
        for seg in path.split("/")
        if seg.startswith("{")
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in op.query
    ]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    content: JSONObject = {op.media: {"schema": op.response}} if op.response is not None else {op.media: {}}
    if path == "/admin/spend":
        content["text/csv"] = {"schema": _STR}
    responses: JSONObject = {str(status): {"description": "Success.", "content": content}}
    if path == "/health/ready":
        responses["503"] = {"description": "Not ready.", "content": {"application/json": {"schema": _ref("Readiness")}}}
    codes = set(op.errors)
    if roles is not None and op.tag != "Models":
        codes |= {401, 403}
    if op.body is not None or op.query or op.tag == "Config":
        codes.add(400)
    if "{id}" in path:
        codes.add(404)
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    if op.tag == "Models":
        responses["default"] = {"description": "An error in the front door's format (OpenAI or Anthropic)."}
    out["responses"] = responses
    return out


def document() -> JSONObject:
    """The OpenAPI 3.1 document (the same for every install of this version: no config, tenants or secrets)."""
    routes = {(r.method, r.path): r for r in admin.ROUTES}
    paths: dict[str, JSONObject] = {}
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, routes.get((method, path)))
    errors: JSONObject = {
        f"E{code}": {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
        for code, text in _ERROR_TEXT.items()
    }
    schemas: JSONObject = dict(_SCHEMAS)
    path_items: JSONObject = dict(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollgate",
            "version": tollgate.__version__,
            "description": "The Tollgate AI gateway's HTTP API: the admin API under /admin, route explanations, "
            "probes and metrics, and (briefly) the model endpoints. Errors are OpenAI-shaped "
            '({"error": {"message", "type", "param", "code"}}) except on the Anthropic front door. '
            f"Each operation lists the key roles it accepts in `{ROLES_EXTENSION}` (docs/admin-api.md).",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in OPERATIONS.values())],
        "paths": path_items,
        "components": {
            "schemas": schemas,
            "responses": errors,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The master key or a virtual key (tg-…): Authorization: Bearer <key>.",
                }
            },
        },
        "security": [{"bearer": []}],
    }


@cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def serve(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await send_bytes(request.send, 200, _document_bytes(), JSON_HEADERS + ctx.response_headers())
