"""Pump a started upstream stream to the client in its format; cancel upstream when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from tollgate.api.http import Request, end_stream, start_stream, stream_part, wait_for_disconnect
from tollgate.context import RequestContext
from tollgate.core.dispatch import ChunkStream
from tollgate.errors import InternalError, TollgateError
from tollgate.types import JSONObject

log = logging.getLogger("tollgate")


class StreamEncoder(Protocol):
    """Canonical chunks in, the client's wire bytes out."""

    def encode(self, chunks: list[JSONObject]) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: TollgateError) -> bytes: ...


async def pump(request: Request, ctx: RequestContext, stream: ChunkStream, encoder: StreamEncoder) -> None:
    """Send headers, then every chunk; a mid-stream failure becomes a terminal error event."""
    send = request.send
    await start_stream(send, ctx.response_headers())

    async def run() -> None:
        try:
            async for chunks in stream:
                data = encoder.encode(chunks)
                if data:
                    await stream_part(send, data)
            await stream_part(send, encoder.end())
        except TollgateError as err:
            ctx.status, ctx.error_type = err.status, err.type
            await stream_part(send, encoder.error(err))
        except Exception:
            log.exception("stream failed (request %s)", ctx.request_id)
            internal = InternalError(f"The stream failed inside the gateway (request {ctx.request_id}).")
            ctx.status, ctx.error_type = 500, internal.type
            await stream_part(send, encoder.error(internal))
        finally:
            ctx.usage = stream.usage
        await end_stream(send)

    await race_disconnect(request, ctx, run, stream.aclose)


async def race_disconnect(
    request: Request, ctx: RequestContext, work: Callable[[], Awaitable[None]], cleanup: Callable[[], object]
) -> None:
    """Run ``work`` until it finishes or the client disconnects; then always run ``cleanup``."""
    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            ctx.client_disconnected = True
            ctx.status = 499
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        else:
            task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        result = cleanup()
        if asyncio.iscoroutine(result):
            await result
