"""Admin endpoints for keys (the rest of the admin API grows with the governance work)."""

from __future__ import annotations

import time

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from tollgate.state.keys import new_key_record
from tollgate.types import JSONObject
from tollgate.wire.openai import parse_json_object

_ROLES = ("user", "admin")


async def _require_admin(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if not principal.is_admin:
        raise PermissionDeniedError("This endpoint needs the master key or an admin key.")


def _opt_str(body: JSONObject, name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"'{name}' must be a string.", param=name)
    return value


async def create_key(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _require_admin(gw, request, ctx)
    body = parse_json_object(await request.body(64 * 1024))
    name = _opt_str(body, "name") or "unnamed"
    role = _opt_str(body, "role") or "user"
    if role not in _ROLES:
        raise InvalidRequestError(f"'role' must be one of {', '.join(_ROLES)}.", param="role")
    models = body.get("allowed_models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise InvalidRequestError(
            "'allowed_models' must be an array of model names or patterns.", param="allowed_models"
        )
    expires_in = body.get("expires_in_seconds")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0
    ):
        raise InvalidRequestError("'expires_in_seconds' must be a positive number.", param="expires_in_seconds")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidRequestError("'metadata' must be an object.", param="metadata")
    key, record = new_key_record(
        name=name,
        user_id=_opt_str(body, "user_id"),
        team_id=_opt_str(body, "team_id"),
        role=role,
        expires_at=time.time() + float(expires_in) if expires_in is not None else None,
        allowed_models=tuple(models),  # type: ignore[arg-type]
        metadata=metadata,
    )
    await gw.keys.put(record)
    gw.authenticator.remember(record)
    # The clear key appears in this response only; it is not stored anywhere.
    await send_json(request.send, 201, {**record.public(), "key": key}, ctx.response_headers())


async def list_keys(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _require_admin(gw, request, ctx)
    records = await gw.keys.list()
    await send_json(
        request.send, 200, {"object": "list", "data": [r.public() for r in records]}, ctx.response_headers()
    )


async def revoke_key(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _require_admin(gw, request, ctx)
    key_id = request.path.removeprefix("/admin/keys/").removesuffix("/revoke")
    record = await gw.keys.revoke(key_id, time.time())
    if record is None:
        raise NotFoundError(f"No key with id '{key_id}'.")
    gw.authenticator.invalidate(record)
    await send_json(request.send, 200, record.public(), ctx.response_headers())
