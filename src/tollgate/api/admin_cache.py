"""``GET /admin/cache/stats`` and ``POST /admin/cache/invalidate``: the response cache's counts and invalidation.

The stats hold this process's counts (``process``, ``by_model``, ``by_scope``) and, under ``ledger``, the
hits and dollars saved the ledger recorded over the last ``days`` (default 30): shared by every replica
writing to the same ledger.
"""

from __future__ import annotations

from tollgate.api.admin_overview import day_range, parse_days
from tollgate.api.http import Request, send_json
from tollgate.context import Principal, RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.policies.cache import WarmEntry, scope_id_of
from tollgate.reports import spend_report, usd
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import parse_json_object

STATS_READERS = ("admin", "viewer")
# One selector per call; ``all`` empties the cache.
SELECTORS = ("model", "org", "team", "key")
MAX_BODY = 4096
LEDGER_DAYS = 30  # the default window of the ledger's savings in the stats


def _require(role: str, allowed: tuple[str, ...], what: str) -> None:
    if role not in allowed:
        raise PermissionDeniedError(
            f"{what} needs a key with role {' or '.join(allowed)}; this key has role '{role}'.",
            code="insufficient_role",
        )


def _disabled() -> JSONObject:
    return {"enabled": False, "entries": 0}


async def stats(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    _require(principal.role, STATS_READERS, "Reading cache stats")
    days = parse_days(request.query.get("days") or str(LEDGER_DAYS))
    cache = gw.cache
    report = await cache.report() if cache is not None else _disabled()
    enabled = cache is not None and (cache.settings.enabled or any(m.enabled for m in cache.settings.models.values()))
    body = {**report, "enabled": enabled, "ledger": await ledger_savings(gw, days)}
    await send_json(request.send, 200, body, ctx.response_headers())


async def ledger_savings(gw: Gateway, days: int) -> JSONObject:
    """Cache hits and what they saved over the last ``days`` UTC days, from the ledger's aggregates: every
    replica's hits when the ledger is shared (PostgreSQL), unlike the per-process counts."""
    since, until = day_range(days)
    report = await spend_report(gw.storage.ledger, "day", since, until)
    total = report.total
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "requests": total.requests,
        "hits": total.cache_hits,
        "usd_saved": usd(total.cost_saved_nanos),
        "nanousd_saved": total.cost_saved_nanos,
    }


def invalidation_tag(body: JSONObject) -> str:
    """The one tag a request body selects: ``{"all": true}`` or exactly one of model, org, team, key."""
    chosen = [(name, body[name]) for name in SELECTORS if body.get(name) is not None]
    if body.get("all") is True:
        if chosen:
            raise InvalidRequestError("Give either 'all' or one selector, not both.")
        return "all"
    if len(chosen) != 1:
        raise InvalidRequestError(f'Give exactly one of {", ".join(SELECTORS)} (or "all": true).')
    name, value = chosen[0]
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"'{name}' must be a non-empty string.", param=name)
    return f"{name}:{value}"


async def invalidate(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    _require(principal.role, ("admin",), "Invalidating the cache")
    tag = invalidation_tag(parse_json_object(await request.body(MAX_BODY)))
    deleted = await gw.cache.invalidate(tag) if gw.cache is not None else 0
    await send_json(request.send, 200, {"invalidated": tag, "deleted": deleted}, ctx.response_headers())


WARM_MAX_BODY = 16 * 1024 * 1024
WARM_MAX_ENTRIES = 10_000
_SCOPE_FIELDS = {"org": "org", "team": "team", "key": "key_id"}


def warm_entries(body: JSONObject) -> list[WarmEntry]:
    """The entries of a warm-up body, checked: each needs a model, messages (or a prompt) and an answer."""
    raw = body.get("entries")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("'entries' must be a non-empty list of {model, messages or prompt, answer}.")
    if len(raw) > WARM_MAX_ENTRIES:
        raise InvalidRequestError(f"At most {WARM_MAX_ENTRIES} entries per call; send the rest in another call.")
    entries: list[WarmEntry] = []
    for i, item in enumerate(raw):
        where = f"entries[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{where} must be an object.", param=where)
        model, answer = item.get("model"), item.get("answer")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError(f"{where}.model must be a model name.", param=f"{where}.model")
        if not isinstance(answer, str) or not answer:
            raise InvalidRequestError(f"{where}.answer must be a non-empty string.", param=f"{where}.answer")
        messages = item.get("messages")
        prompt = item.get("prompt")
        if messages is None and isinstance(prompt, str) and prompt:
            messages = [{"role": "user", "content": prompt}]
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise InvalidRequestError(
                f"{where} needs 'messages' (a list of chat messages) or 'prompt' (a string).", param=f"{where}.messages"
            )
        params = item.get("params", {})
        if not isinstance(params, dict):
            raise InvalidRequestError(f'{where}.params must be an object (e.g. {{"temperature": 0}}).')
        entries.append(WarmEntry(model, tuple(m for m in messages if isinstance(m, dict)), answer, params))
    return entries


async def warm(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``POST /admin/cache/warm``: store prepared answers (see docs/caching.md, Warming up)."""
    principal = await gw.authenticate(ctx, request.headers)
    _require(principal.role, ("admin",), "Warming the cache")
    body = parse_json_object(await request.body(WARM_MAX_BODY))
    entries = warm_entries(body)
    cache = gw.cache
    if cache is None:
        raise InvalidRequestError("The response cache is not configured on this gateway.", code="cache_disabled")
    scope = cache.settings.scope
    ids: dict[str, str] = {}
    for name in ("org", "team", "key_id"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise InvalidRequestError(f"'{name}' must be a non-empty string.", param=name)
            ids[name] = value
    needed = _SCOPE_FIELDS.get(scope)
    if needed is not None and needed not in ids:
        raise InvalidRequestError(
            f"cache.scope is '{scope}': say whose entries these are with '{needed}' (entries of one {scope} are "
            f"never served to another).",
            param=needed,
        )
    target = Principal(
        key_id=ids.get("key_id", "cache-warm"),
        name="cache warm-up",
        role="user",
        team_id=ids.get("team"),
        org_id=ids.get("org"),
    )
    report = await cache.warm(entries, gw.snapshot.resolve, target)
    await send_json(
        request.send,
        200,
        {"stored": report.stored, "skipped": list[JSONValue](report.skipped), "scope": scope_id_of(scope, target)},
        ctx.response_headers(),
    )
