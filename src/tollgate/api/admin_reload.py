"""``POST /admin/reload``: re-read the config file and apply what can change without a restart."""

from __future__ import annotations

from tollgate.api.admin_access import Actor
from tollgate.api.http import Request, send_json
from tollgate.config.loader import ConfigError
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import InvalidRequestError, PermissionDeniedError
from tollgate.state.audit import new_audit_record


async def reload(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if principal.role != "admin":
        raise PermissionDeniedError(
            f"Reloading the config needs a key with role admin; this key has role '{principal.role}'.",
            code="insufficient_role",
        )
    reloader = gw.reloader
    if reloader is None:
        raise InvalidRequestError(
            "This gateway was started without a config file (tollgate serve --config FILE), so there is no "
            "file to reload.",
            code="no_config_file",
        )
    try:
        result = await reloader.reload()
    except ConfigError as exc:
        # The loader's message names the file, the key path and the problem; the old config keeps serving.
        raise InvalidRequestError(
            f"{exc} The running config (version {gw.snapshot.version}) stays in force.", code="invalid_config"
        ) from None
    actor = Actor.of(principal)
    await gw.storage.audit.append(
        new_audit_record(
            actor_key_id=actor.key_id,
            actor_role=actor.role,
            action="reload_config",
            target_type="config",
            target_id=str(reloader.path),
            before={"config_version": result.previous_version},
            after={
                "config_version": result.version,
                "applied": list(result.applied),
                "restart_required": list(result.restart_required),
            },
            request_id=ctx.request_id,
        )
    )
    await send_json(request.send, 200, result.to_json(), ctx.response_headers())
