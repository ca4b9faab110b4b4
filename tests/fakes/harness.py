"""Run an aiohttp fake provider on a loopback port in a background thread, and record what it received.

Scenarios are picked by the model name the gateway sends upstream (``scenario-<name>``), since the
gateway does not forward client headers to providers:

    ok (default)            a normal answer / stream
    429_retry_after         429 with Retry-After: 7
    500                     500 with a provider error body
    401                     401 (bad provider key)
    400                     400 with a provider error message
    timeout_before_headers  sleep longer than the gateway's read timeout before answering
    stall_mid_stream        stream a few chunks, then stall
    cut_stream              stream a few chunks, then close the connection without finishing
    garbage                 200 with a body that is not the provider's format
    no_usage                a normal answer without usage
    malformed_usage         usage with wrong types
    slow_stream             stream with a 50 ms pause between chunks

Some fakes add provider-specific ones (Anthropic: 529 overloaded; Gemini: safety, blocked, 503, 403,
unfinished_stream; Ollama: 404 model not found, error_mid_stream); each fake's module lists its own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    base_url: str
    requests: list[Recorded] = field(default_factory=list)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def scenario_of(model: str) -> str:
    marker = "scenario-"
    return model[model.index(marker) + len(marker) :] if marker in model else "ok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: web.Application) -> Iterator[FakeServer]:
    """Start ``app`` on 127.0.0.1 in its own thread and event loop; stop it on exit."""
    port = free_port()
    server = FakeServer(base_url=f"http://127.0.0.1:{port}")

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        body = await request.read()
        server.requests.append(Recorded(request.method, request.path, dict(request.query), dict(request.headers), body))
        return await handler(request)

    app.middlewares.insert(0, record)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:

        async def shutdown() -> None:
            await runner.cleanup()
            # Handlers still sleeping (stalled-stream scenarios) are cancelled, so none is left pending.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with suppress(Exception):
            fut.result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
