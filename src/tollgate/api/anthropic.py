"""The Anthropic-compatible front door: ``POST /v1/messages`` for any backend model.

When every candidate deployment speaks the Anthropic format, the client's body is forwarded untouched
(fields the gateway does not know survive) and the answer is piped back byte for byte while a decoder
reads the usage on the side. Otherwise the request is translated to the canonical form and back.
"""

from __future__ import annotations

import math

import orjson

from tollgate.api.anthropic_codec import AnthropicStreamEncoder, decode_request, encode_response
from tollgate.api.http import JSON_HEADERS, SSE_HEADERS, Request, send_bytes, send_json
from tollgate.api.streaming import pump, race_disconnect
from tollgate.context import RequestContext
from tollgate.core.dispatch import ChunkStream, Completed
from tollgate.core.gateway import FilteredStream, Gateway, describe_request
from tollgate.errors import InvalidRequestError, TollgateError
from tollgate.policies.cache import CachedAnswer, CachePlan, CompletionAccumulator, ReplayStream
from tollgate.routing.resolver import Route
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, parse_json_object, text_of


def _native(gw: Gateway, route: Route) -> bool:
    snap = gw.snapshot
    return all(snap.adapter(d).wire_format == "anthropic" for d in route.candidates)


async def messages(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await gw.authenticate(ctx, request.headers)
    raw = await request.body(gw.max_body_bytes)
    body = parse_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    describe_request(ctx, body, raw)
    ctx.stream = stream = body.get("stream") is True
    route = await gw.route(ctx, model)
    inspected: ChatRequest | None = None
    if gw.pipeline_of(ctx).inspect:
        # INSPECT works on the canonical form: decode first, and key the cache on the masked request.
        inspected = await gw.inspect_chat(ctx, decode_request(body))
        route = gw.rerouted(ctx, route)
    cache_body = inspected.body if inspected is not None else body
    plan, cached = await gw.cache_lookup(ctx, "anthropic", cache_body, route, request.headers)
    if cached is not None:
        await _send_cached(request, ctx, cached, model)
        return
    filters = gw.stream_filters_for(ctx)  # a stream to filter (e.g. cut at a budget) goes through canonical chunks
    if not filters and inspected is None and not gw.output_policies(ctx) and _native(gw, route):
        # The provider validates its own format: blocks and tools only Anthropic knows must survive.
        native = ChatRequest(body=body, model=model, stream=stream, include_usage=stream, raw=raw)
        await _passthrough(gw, request, ctx, native, body, raw, route, plan)
        return
    req = inspected if inspected is not None else decode_request(body)
    ctx.stream = req.stream
    result = await gw.dispatcher.chat(ctx, req, route)
    if isinstance(result, Completed):
        ctx.usage = result.usage
        message = encode_response(await gw.review(ctx, result.data) or result.data, result.usage, req.model)
        await send_json(request.send, 200, message, ctx.response_headers())
        await gw.cache_store(plan, result.data, result.usage, ctx)
        return
    assert isinstance(result, ChunkStream)
    canonical = FilteredStream(result, filters) if filters else result
    reviewed = gw.reviewed(ctx, canonical)  # the webhook's response stage: may hold the stream until it decides
    chunks = gw.cache_recording(plan, reviewed or canonical, [*filters, reviewed])
    await pump(request, ctx, chunks, AnthropicStreamEncoder(req.model), reviewed.ready if reviewed else None)


async def _send_cached(request: Request, ctx: RequestContext, cached: CachedAnswer, model: str) -> None:
    """A cache hit, as a message or as the Messages event sequence."""
    if ctx.stream:
        await pump(request, ctx, ReplayStream(cached), AnthropicStreamEncoder(model))
        return
    await send_json(request.send, 200, encode_response(cached.completion, cached.usage, model), ctx.response_headers())


async def _passthrough(
    gw: Gateway,
    request: Request,
    ctx: RequestContext,
    req: ChatRequest,
    body: JSONObject,
    raw: bytes,
    route: Route,
    plan: CachePlan | None,
) -> None:
    resp = await gw.dispatcher.passthrough(ctx, "messages", body, raw, route, stream=req.stream)
    assert ctx.deployment is not None
    adapter = gw.snapshot.adapter(ctx.deployment)
    if not req.stream:
        data = await resp.read()
        canonical, ctx.usage = adapter.parse_chat_response(data, req)  # validates the body too
        await send_bytes(request.send, 200, data, JSON_HEADERS + ctx.response_headers())
        await gw.cache_store(plan, canonical, ctx.usage)
        return
    decoder = adapter.chat_stream_decoder(req)
    answer = CompletionAccumulator() if gw.cache_stores(plan) else None
    encoder = AnthropicStreamEncoder(req.model)
    send = request.send

    async def run() -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + ctx.response_headers()})
        try:
            async for part in resp.chunks():
                chunks = decoder.feed(part)  # usage tap; the client gets the provider's own bytes
                if answer is not None:
                    answer.feed(chunks)
                await send({"type": "http.response.body", "body": part, "more_body": True})
            tail = decoder.close()
            if answer is not None:
                answer.feed(tail)
                await gw.cache_store(plan, answer.completion(), decoder.usage)
        except TollgateError as err:
            ctx.status, ctx.error_type = err.status, err.type
            await send({"type": "http.response.body", "body": encoder.error(err), "more_body": True})
        finally:
            ctx.usage = decoder.usage
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    await race_disconnect(request, ctx, run, resp.close)


async def count_tokens(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """An estimate (about four characters per token) so clients that budget their context keep working."""
    await gw.authenticate(ctx, request.headers)
    body = parse_json_object(await request.body(gw.max_body_bytes))
    if "max_tokens" not in body:
        body = {**body, "max_tokens": 1}
    req = decode_request(body)
    chars = sum(len(text_of(m.get("content"))) for m in req.messages if isinstance(m, dict))
    tools = req.body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    await send_json(request.send, 200, {"input_tokens": max(1, math.ceil(chars / 4))}, ctx.response_headers())
