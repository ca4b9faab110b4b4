"""``GET /admin/cache/stats`` and ``POST /admin/cache/invalidate``: the response cache's counts and invalidation."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.types import JSONObject
from tollgate.wire.openai import parse_json_object

STATS_READERS = ("admin", "viewer")
# One selector per call; ``all`` empties the cache.
SELECTORS = ("model", "org", "team", "key")
MAX_BODY = 4096


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
    cache = gw.cache
    report = await cache.report() if cache is not None else _disabled()
    enabled = cache is not None and (cache.settings.enabled or any(m.enabled for m in cache.settings.models.values()))
    await send_json(request.send, 200, {**report, "enabled": enabled}, ctx.response_headers())


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
