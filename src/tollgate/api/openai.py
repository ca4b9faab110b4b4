"""The OpenAI-compatible front door: /v1/chat/completions, /v1/embeddings, /v1/models, /v1/completions."""

from __future__ import annotations

from typing import Literal

import orjson

from tollgate.api.errors import openai_error
from tollgate.api.http import JSON_HEADERS, Request, send_bytes, send_json
from tollgate.api.streaming import pump, race_disconnect
from tollgate.context import RequestContext
from tollgate.core.dispatch import Completed, RelayStream
from tollgate.core.gateway import FilteredStream, Gateway, describe_request
from tollgate.errors import InvalidRequestError, TollgateError
from tollgate.policies.cache import CachedAnswer, ReplayStream
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage, parse_chat_request, parse_json_object
from tollgate.wire.sse import DONE


class OpenAIStreamEncoder:
    """Re-encodes canonical chunks (which are OpenAI chunks) and hides the usage the client did not ask for."""

    __slots__ = ("include_usage",)

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def encode(self, chunks: list[JSONObject]) -> bytes:
        out = []
        for c in chunks:
            if not self.include_usage and "usage" in c:
                if not c.get("choices"):
                    continue  # the usage-only chunk the gateway asked for on its own behalf
                c = {k: v for k, v in c.items() if k != "usage"}
            out.append(b"data: " + orjson.dumps(c) + b"\n\n")
        return b"".join(out)

    def end(self) -> bytes:
        return DONE

    def error(self, err: TollgateError) -> bytes:
        # The OpenAI SDKs raise an APIError when a data event carries an "error" object.
        return b"data: " + orjson.dumps(openai_error(err)) + b"\n\n"


class RelayEncoder:
    """For relayed streams: the bytes are already the client's format, including the final [DONE]."""

    __slots__ = ()

    def encode(self, piece: bytes) -> bytes:
        return piece

    def end(self) -> bytes:
        return b""

    def error(self, err: TollgateError) -> bytes:
        return b"data: " + orjson.dumps(openai_error(err)) + b"\n\n"


_RELAY = RelayEncoder()


async def chat_completions(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await gw.authenticate(ctx, request.headers)
    raw = await request.body(gw.max_body_bytes)
    req = parse_chat_request(raw)
    ctx.stream = req.stream
    describe_request(ctx, req.body, raw)
    route = await gw.route(ctx, req.model)
    req = await gw.inspect_chat(ctx, req)  # before the cache: what is cached and compared is the masked prompt
    route = gw.rerouted(ctx, route)
    plan, cached = await gw.cache_lookup(ctx, "openai", req.body, route, request.headers)
    if cached is not None:
        await _send_cached(request, ctx, cached, req.include_usage)
        return
    filters = gw.stream_filters_for(ctx)  # any filter (e.g. a budget to cut at) rules out relaying bytes
    # An answer to cache is read as canonical chunks, not relayed as bytes.
    relay: Literal["openai"] | None = None if filters or gw.cache_stores(plan) or gw.reviews_streams(ctx) else "openai"
    result = await gw.dispatcher.chat(ctx, req, route, relay=relay)
    if isinstance(result, Completed):
        ctx.usage = result.usage
        answer, result = await gw.answer(ctx, req, route, result)  # an output policy may ask for it again
        if answer is not None:
            body = orjson.dumps(answer)
        else:
            body = result.raw_openai if result.raw_openai is not None else orjson.dumps(result.data)
        await send_bytes(request.send, 200, body, JSON_HEADERS + ctx.response_headers())
        await gw.cache_store(plan, result.data, result.usage, ctx)
    elif isinstance(result, RelayStream):
        await pump(request, ctx, result, _RELAY)
    else:
        stream = FilteredStream(result, filters) if filters else result
        reviewed = gw.reviewed(ctx, stream)  # the webhook's response stage: may hold the stream until it decides
        ready = reviewed.ready if reviewed is not None else None
        recorded = gw.cache_recording(plan, reviewed or stream, [*filters, reviewed])
        await pump(request, ctx, recorded, OpenAIStreamEncoder(req.include_usage), ready)


async def _send_cached(request: Request, ctx: RequestContext, cached: CachedAnswer, include_usage: bool) -> None:
    """A cache hit, as a completion or as a stream of chunks (with the usage chunk when asked for)."""
    if ctx.stream:
        await pump(request, ctx, ReplayStream(cached), OpenAIStreamEncoder(include_usage))
        return
    await send_bytes(request.send, 200, orjson.dumps(cached.completion), JSON_HEADERS + ctx.response_headers())


async def embeddings(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await gw.authenticate(ctx, request.headers)
    raw = await request.body(gw.max_body_bytes)
    body = parse_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    describe_request(ctx, body, raw)
    body = await gw.inspect(ctx, body)
    value = body.get("input")
    if not (isinstance(value, str) or (isinstance(value, list) and value)):
        raise InvalidRequestError("'input' is required: a string or a non-empty array.", param="input")
    route = await gw.route(ctx, model)
    data, usage = await gw.dispatcher.embeddings(ctx, body, route)
    ctx.usage = usage
    await send_json(request.send, 200, data, ctx.response_headers())


async def list_models(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    principal = await gw.authenticate(ctx, request.headers)
    data: list[JSONValue] = list(gw.visible_models(principal))
    await send_json(request.send, 200, {"object": "list", "data": data}, ctx.response_headers())


async def completions(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """Legacy text completions: forwarded as-is to providers that have the endpoint."""
    await gw.authenticate(ctx, request.headers)
    raw = await request.body(gw.max_body_bytes)
    body = parse_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    if "prompt" not in body:
        raise InvalidRequestError("'prompt' is required.", param="prompt")
    ctx.stream = body.get("stream") is True
    describe_request(ctx, body, raw)
    route = await gw.route(ctx, model)
    inspected = await gw.inspect(ctx, body)  # the prompt is screened and masked like any other text
    if inspected is not body:
        body, raw = inspected, orjson.dumps(inspected)
    route = gw.rerouted(ctx, route)
    resp = await gw.dispatcher.passthrough(ctx, "completions", body, raw, route, stream=ctx.stream)
    content_type = resp.headers.get("content-type", "application/json")
    headers = [(b"content-type", content_type.encode("latin-1")), *ctx.response_headers()]
    if not ctx.stream:
        data = await resp.read()
        try:
            parsed = orjson.loads(data)
            ctx.usage = Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
        except orjson.JSONDecodeError:
            pass
        await send_bytes(request.send, 200, data, headers)
        return
    send = request.send

    async def run() -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for part in resp.chunks():
                await send({"type": "http.response.body", "body": part, "more_body": True})
        except TollgateError as err:
            ctx.status, ctx.error_type = err.status, err.type
            await send(
                {
                    "type": "http.response.body",
                    "body": OpenAIStreamEncoder(False).error(err),
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    await race_disconnect(request, ctx, run, resp.close)


def render_error(err: TollgateError) -> bytes:
    return orjson.dumps(openai_error(err))
