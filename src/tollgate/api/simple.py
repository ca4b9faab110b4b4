"""The simple API: ``POST /chat`` with ``{"prompt", "model"?}`` → ``{"response", ...}``."""

from __future__ import annotations

from tollgate.api.http import Request, send_json
from tollgate.context import RequestContext
from tollgate.core.dispatch import Completed
from tollgate.core.gateway import Gateway, describe_request
from tollgate.errors import InvalidRequestError
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage, parse_json_object, text_of


async def chat(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await gw.authenticate(ctx, request.headers)
    raw = await request.body(gw.max_body_bytes)
    body = parse_json_object(raw)
    describe_request(ctx, body, raw)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("'prompt' is required and must be a non-empty string.", param="prompt")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequestError("'model' must be a non-empty string when given.", param="model")
    model = model or gw.default_model()
    canonical: JSONObject = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    system = body.get("system")
    if isinstance(system, str) and system:
        canonical["messages"] = [{"role": "system", "content": system}, *canonical["messages"]]  # type: ignore[misc]
    for name in ("temperature", "max_tokens"):
        if body.get(name) is not None:
            canonical[name] = body[name]
    route = await gw.route(ctx, model)
    canonical = await gw.inspect(ctx, canonical)
    route = gw.rerouted(ctx, route)
    plan, cached = await gw.cache_lookup(ctx, "openai", canonical, route, request.headers)
    if cached is not None:
        data, usage_in = cached.completion, cached.usage
    else:
        result = await gw.dispatcher.chat(ctx, ChatRequest(body=canonical, model=model, stream=False), route)
        assert isinstance(result, Completed)
        ctx.usage = usage_in = result.usage
        data = result.data
    shown = await gw.review(ctx, data) or data
    choices = shown.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    message = first.get("message") if isinstance(first, dict) else None
    text = text_of(message.get("content")) if isinstance(message, dict) else ""
    usage = usage_in or Usage()
    dep = ctx.deployment
    cached_model = data.get("model") if cached is not None else None
    await send_json(
        request.send,
        200,
        {
            "response": text,
            "model": dep.model if dep else str(cached_model or model),
            "provider": dep.provider if dep else None,
            "usage": usage.to_openai(),
            "cache_hit": ctx.cache_hit,
            "latency_ms": round(ctx.elapsed_ms, 2),
            "request_id": ctx.request_id,
        },
        ctx.response_headers(),
    )
    if cached is None:
        await gw.cache_store(plan, data, usage_in, ctx)
