"""``POST /v1/route/explain`` (admin): the routing decision for a chat request and its reasons; calls no provider."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway, describe_request, request_facts
from tollgate.errors import PermissionDeniedError
from tollgate.routing.explain import explain
from tollgate.routing.split import assign
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import max_output_tokens, parse_chat_request

# Output tokens assumed for the lowest_cost estimate when the request sets no max_tokens (as the dispatcher).
_NOMINAL_OUTPUT_TOKENS = 256


async def route_explain(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    if not principal.is_admin:
        raise PermissionDeniedError(
            f"Route explanations need the master key or an admin key; this key has role '{principal.role}'.",
            code="insufficient_role",
        )
    raw = await request.body(gw.max_body_bytes)
    req = parse_chat_request(raw)
    snapshot = gw.snapshot
    ctx.stream = req.stream
    describe_request(ctx, req.body, raw)
    # Resolution and routing rules only: ADMIT (limits, budgets) is not run, so explaining consumes nothing.
    # The rules see this request's headers, tags and body, and the caller whose key made it.
    route = gw.resolve(ctx, req.model)
    ctx.requested_model = req.model
    decision = explain(
        route,
        gw.dispatcher.state,
        prompt_tokens=ctx.estimated_prompt_tokens,
        output_tokens=max_output_tokens(req.body) or _NOMINAL_OUTPUT_TOKENS,
        stream=req.stream,
        config_version=snapshot.version,
        arm=assign(route.split, route.plan, ctx, gw.dispatcher.state.rng) if route.split is not None else None,
    )
    rules = snapshot.rules
    decision["rules"] = rules.trace(req.model, request_facts(ctx, gw.budget_levels))
    regions: JSONObject = {zone: list[JSONValue](sorted(rules.allowed_regions(zone))) for zone in route.residency}
    decision["residency_regions"] = regions
    await send_json(request.send, 200, decision, ctx.response_headers())
