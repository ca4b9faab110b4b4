"""Liveness and readiness probes."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.types import JSONValue


async def health(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await send_json(request.send, 200, {"status": "ok"}, ctx.response_headers())


async def ready(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    checks: dict[str, JSONValue] = {"config": "ok", "storage": "ok"}
    status = 200
    try:
        await gw.storage.ping()
    except Exception as exc:  # the probe reports any storage failure; it never raises
        checks["storage"] = f"unavailable: {type(exc).__name__}"
        status = 503
    reason: JSONValue = None
    if gw.draining:  # shutting down: load balancers stop sending here first (docs/operations.md)
        checks["server"] = "draining"
        status = 503
        reason = "draining"
    elif status != 200:
        reason = "storage_unavailable"
    await send_json(
        request.send,
        status,
        {
            "status": "ready" if status == 200 else "not_ready",
            **({"reason": reason} if reason else {}),
            "checks": checks,
            "config_version": gw.snapshot.version,
        },
        ctx.response_headers(),
    )
