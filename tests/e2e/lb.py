"""A small round-robin HTTP load balancer for the scale test and the replica benchmark (a test tool, not a
product feature).

It behaves like nginx with ``proxy_next_upstream error``: a backend that refuses the connection is skipped
and the request goes to the next one (nothing was sent, so this is safe for a POST); a backend that fails
after the request was sent (it died mid-request) is not retried, since the request may have been
processed, and the client gets a 502 — as nginx does for non-idempotent requests. A backend that failed is
left out of the rotation for ``fail_timeout`` seconds (nginx's ``max_fails=1 fail_timeout=…``).

Every answer carries ``x-lb-backend``: the backend that produced it (the test uses it to know which replica
served which request id).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

# Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones aiohttp recomputes.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclass
class Backend:
    base: str
    down_until: float = 0.0
    answered: int = 0
    refused: int = 0
    failed: int = 0


@dataclass
class LoadBalancer:
    backends: list[Backend]
    fail_timeout: float = 0.5
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    def of(cls, bases: list[str], fail_timeout: float = 0.5) -> LoadBalancer:
        return cls([Backend(b) for b in bases], fail_timeout)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            # A new connection per request, as nginx does by default (no upstream keepalive): a dead backend
            # is then always a refused connection, never a stale pooled one.
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=60, connect=2),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _order(self) -> list[Backend]:
        """Every backend once, starting from the next in turn; those marked down go last (never skipped
        entirely: if all are down, they are tried anyway, as nginx does)."""
        n = len(self.backends)
        start = next(self._turn) % n
        ring = [self.backends[(start + i) % n] for i in range(n)]
        now = time.monotonic()
        return [b for b in ring if b.down_until <= now] + [b for b in ring if b.down_until > now]

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        for backend in self._order():
            try:
                upstream = await self._session.request(
                    request.method, backend.base + request.rel_url.raw_path_qs, headers=headers, data=body
                )
            except aiohttp.ClientConnectorError:
                # Connection refused (or nothing listens): the request was never sent, try the next one.
                backend.refused += 1
                backend.down_until = time.monotonic() + self.fail_timeout
                continue
            except (aiohttp.ClientError, TimeoutError):
                backend.failed += 1
                backend.down_until = time.monotonic() + self.fail_timeout
                return _bad_gateway(backend)
            try:
                response = web.StreamResponse(status=upstream.status)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP:
                        response.headers.add(k, v)
                response.headers["x-lb-backend"] = backend.base
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, TimeoutError):
                # The backend died while answering: the client sees a cut answer, as it would through nginx.
                backend.failed += 1
                backend.down_until = time.monotonic() + self.fail_timeout
                raise
            finally:
                upstream.release()
            backend.answered += 1
            return response
        return _bad_gateway(None)


def _bad_gateway(backend: Backend | None) -> web.Response:
    response = web.json_response(
        {"error": {"message": "bad gateway (test load balancer)", "type": "bad_gateway", "code": None}},
        status=502,
    )
    if backend is not None:
        response.headers["x-lb-backend"] = backend.base
    return response
