"""Pump a started upstream stream to the client in its format; cancel upstream when the client leaves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from tollgate.api.http import Request, start_stream, stream_part, wait_for_disconnect
from tollgate.context import RequestContext
from tollgate.errors import InternalError, TollgateError
from tollgate.wire.openai import Usage

log = logging.getLogger("tollgate")

Piece = TypeVar("Piece")
PieceIn = TypeVar("PieceIn", contravariant=True)
PieceOut = TypeVar("PieceOut", covariant=True)


class StreamEncoder(Protocol[PieceIn]):
    """Stream pieces in (canonical chunks, or relayed bytes), the client's wire bytes out."""

    def encode(self, piece: PieceIn) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: TollgateError) -> bytes: ...


class PieceStream(Protocol[PieceOut]):
    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[PieceOut]: ...

    async def aclose(self) -> None: ...


async def pump(
    request: Request,
    ctx: RequestContext,
    stream: PieceStream[Piece],
    encoder: StreamEncoder[Piece],
    ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Send headers, then every piece; a mid-stream failure becomes a terminal error event.

    ``ready`` runs first, under the same disconnect watch (a stream held for a review): an error it raises
    goes to the front door as a plain HTTP error, since nothing was sent yet."""
    send = request.send

    async def run() -> None:
        if ready is not None:
            try:
                await ready()
            except BaseException:
                ctx.usage = stream.usage  # FINALIZE charges what was generated before the refusal
                raise
        await start_stream(send, ctx.response_headers())
        try:
            async for piece in stream:
                data = encoder.encode(piece)
                if data:
                    await stream_part(send, data)
                    if ctx.first_byte_at is None:  # time to first byte, for the metrics
                        ctx.first_byte_at = time.perf_counter()
            final = encoder.end()
        except TollgateError as err:
            ctx.status, ctx.error_type = err.status, err.type
            final = encoder.error(err)
        except Exception:
            log.exception("stream failed (request %s)", ctx.request_id)
            internal = InternalError(f"The stream failed inside the gateway (request {ctx.request_id}).")
            ctx.status, ctx.error_type = 500, internal.type
            final = encoder.error(internal)
        finally:
            ctx.usage = stream.usage
        # The closing bytes travel with the end of the body: one send fewer per stream.
        await send({"type": "http.response.body", "body": final, "more_body": False})

    await race_disconnect(request, ctx, run, stream.aclose)


async def race_disconnect(
    request: Request, ctx: RequestContext, work: Callable[[], Awaitable[None]], cleanup: Callable[[], object]
) -> None:
    """Run ``work``; if the client disconnects first, cancel it. Then always run ``cleanup``.

    One watcher task cancels this task on disconnect (cheaper than racing two tasks per stream).
    """
    task = asyncio.current_task()
    assert task is not None
    state = {"gone": False, "finished": False}

    async def watch() -> None:
        await wait_for_disconnect(request.receive)
        if not state["finished"]:
            state["gone"] = True
            task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work()
        state["finished"] = True
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        task.uncancel()
        ctx.client_disconnected = True
        ctx.status = 499
    finally:
        state["finished"] = True
        watcher.cancel()
        result = cleanup()
        if asyncio.iscoroutine(result):
            await result
