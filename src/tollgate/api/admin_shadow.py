"""``GET /admin/shadow``: how each shadow candidate compares with the deployments it shadows (this process)."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import ModelNotFoundError, PermissionDeniedError
from tollgate.types import JSONValue

READERS = ("admin", "viewer")


async def shadow_report(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role not in READERS:
        raise PermissionDeniedError(
            f"Reading shadow reports needs a key with role admin or viewer; this key has role '{principal.role}'.",
            code="insufficient_role",
        )
    policy = gw.shadow
    models = policy.models if policy is not None else []
    wanted = request.query.get("model")
    if wanted is not None:
        report = policy.report(wanted) if policy is not None else None
        if report is None:
            shown = ", ".join(models) or "none"
            raise ModelNotFoundError(
                f"The model '{wanted}' has no shadow in the current config (models with one: {shown}).",
                param="model",
            )
        await send_json(request.send, 200, report, ctx.response_headers())
        return
    reports: list[JSONValue] = []
    if policy is not None:
        reports = [r for m in models if (r := policy.report(m)) is not None]
    await send_json(request.send, 200, {"object": "list", "data": reports}, ctx.response_headers())
