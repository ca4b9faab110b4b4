"""GET /metrics: the Prometheus exposition of the gateway's metrics (open by default; see metrics.require_auth)."""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge

from tollgate.api.http import Request, send_bytes
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import NotFoundError, PermissionDeniedError
from tollgate.observability.metrics import CONTENT_TYPE
from tollgate.observability.recorder import MetricsRecorder

_HEADERS = [(b"content-type", CONTENT_TYPE.encode("latin-1")), (b"cache-control", b"no-store")]


def find_recorder(gw: Gateway) -> MetricsRecorder | None:
    """The gateway's metrics recorder (a finalize policy), or ``None`` when metrics are disabled."""
    for policy in gw.pipeline.finalize:
        if isinstance(policy, MetricsRecorder):
            return policy
    return None


def in_flight_gauge(gw: Gateway) -> Gauge:
    """The in-flight gauge the app moves around each request; a detached one when metrics are disabled."""
    recorder = find_recorder(gw)
    if recorder is None:
        return Gauge("tollgate_requests_in_flight", "Detached: metrics are disabled.", registry=None)
    return recorder.metrics.requests_in_flight


async def metrics(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    recorder = find_recorder(gw)
    if recorder is None:
        raise NotFoundError("Metrics are disabled on this gateway (metrics.enabled: false).")
    if recorder.require_auth:
        principal = await gw.authenticate(ctx, request.headers)
        if not principal.is_admin:
            raise PermissionDeniedError("Reading /metrics needs the master key or an admin key.")
    recorder.sample()
    # Rendering is CPU work proportional to the number of series (and file reads in multiprocess mode):
    # off the event loop, so a scrape does not stall requests. prometheus-client's metrics are thread-safe.
    body = await asyncio.to_thread(recorder.metrics.render)
    await send_bytes(request.send, 200, body, _HEADERS + ctx.response_headers())
