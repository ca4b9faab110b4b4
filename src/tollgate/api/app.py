"""The ASGI application: a fixed route table, per-request context, error rendering, lifespan."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping

import orjson

from tollgate.api import (
    admin,
    admin_cache,
    admin_guard_profiles,
    admin_guardrails,
    admin_reload,
    admin_shadow,
    admin_spend,
    anthropic,
    health,
    metrics,
    openai,
    openapi,
    route_explain,
    simple,
    sso,
)
from tollgate.api.admin_overview import models as admin_models
from tollgate.api.admin_overview import overview as admin_overview
from tollgate.api.errors import anthropic_error, openai_error
from tollgate.api.http import JSON_HEADERS, Receive, Request, Scope, Send, send_bytes
from tollgate.api.ui import PREFIX as UI_PREFIX
from tollgate.api.ui import asset as ui_asset
from tollgate.api.ui import page as ui_page
from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings, load_or_create_master_key, static_settings
from tollgate.context import RequestContext
from tollgate.core.assembly import build_gateway
from tollgate.core.gateway import Gateway
from tollgate.errors import InternalError, NotFoundError, TollgateError
from tollgate.types import JSONObject

log = logging.getLogger("tollgate")

Handler = Callable[[Gateway, Request, RequestContext], Awaitable[None]]
ErrorRenderer = Callable[[TollgateError], JSONObject]


class RouteSpec:
    __slots__ = ("endpoint", "front_door", "handler", "render")

    def __init__(self, handler: Handler, front_door: str, endpoint: str, render: ErrorRenderer = openai_error) -> None:
        self.handler = handler
        self.front_door = front_door
        self.endpoint = endpoint
        self.render = render


def _routes() -> dict[tuple[str, str], RouteSpec]:
    chat = RouteSpec(openai.chat_completions, "openai", "chat")
    emb = RouteSpec(openai.embeddings, "openai", "embeddings")
    models = RouteSpec(openai.list_models, "openai", "models")
    comp = RouteSpec(openai.completions, "openai", "completions")
    msgs = RouteSpec(anthropic.messages, "anthropic", "messages", anthropic_error)
    return {
        ("POST", "/v1/chat/completions"): chat,
        ("POST", "/chat/completions"): chat,
        ("POST", "/v1/embeddings"): emb,
        ("POST", "/embeddings"): emb,
        ("GET", "/v1/models"): models,
        ("GET", "/models"): models,
        ("POST", "/v1/completions"): comp,
        ("POST", "/completions"): comp,
        ("POST", "/v1/messages"): msgs,
        ("POST", "/v1/messages/count_tokens"): RouteSpec(
            anthropic.count_tokens, "anthropic", "count_tokens", anthropic_error
        ),
        ("POST", "/chat"): RouteSpec(simple.chat, "simple", "simple_chat"),
        ("GET", "/health"): RouteSpec(health.health, "health", "health"),
        ("GET", "/health/live"): RouteSpec(health.health, "health", "health"),
        ("GET", "/health/ready"): RouteSpec(health.ready, "health", "ready"),
        ("GET", "/metrics"): RouteSpec(metrics.metrics, "health", "metrics"),  # ops: not counted as a request
        ("GET", "/admin/spend"): RouteSpec(admin_spend.spend, "admin", "admin"),
        ("POST", "/v1/route/explain"): RouteSpec(route_explain.route_explain, "admin", "admin"),
        ("GET", "/admin/cache/stats"): RouteSpec(admin_cache.stats, "admin", "admin"),
        ("GET", "/admin/shadow"): RouteSpec(admin_shadow.shadow_report, "admin", "admin"),
        ("POST", "/admin/cache/invalidate"): RouteSpec(admin_cache.invalidate, "admin", "admin"),
        ("POST", "/admin/cache/warm"): RouteSpec(admin_cache.warm, "admin", "admin"),
        ("POST", "/admin/reload"): RouteSpec(admin_reload.reload, "admin", "admin"),
        ("GET", "/admin/overview"): RouteSpec(admin_overview, "admin", "admin"),
        ("GET", "/admin/models"): RouteSpec(admin_models, "admin", "admin"),
        ("GET", openapi.PATH): RouteSpec(openapi.serve, "health", "openapi"),  # public: describes, reveals nothing
        ("GET", "/admin/guardrails/events"): RouteSpec(admin_guardrails.events, "admin", "admin"),
        ("GET", "/admin/guardrails/profiles"): RouteSpec(admin_guard_profiles.profiles, "admin", "admin"),
        ("GET", "/ui"): RouteSpec(ui_page, "health", "ui"),  # static files: not counted as requests
        # Single sign-on for the UI (api/sso.py): the flow is "sso", the console's own session is admin API.
        ("GET", "/auth/sso"): RouteSpec(sso.info, "health", "sso"),
        ("GET", "/auth/sso/login"): RouteSpec(sso.login, "admin", "sso"),
        ("GET", "/auth/sso/callback"): RouteSpec(sso.callback, "admin", "sso"),
        ("GET", "/admin/session"): RouteSpec(sso.session, "admin", "admin"),
        ("DELETE", "/admin/session"): RouteSpec(sso.sign_out, "admin", "admin"),
        **{(r.method, r.path): RouteSpec(r.handler(), "admin", "admin") for r in admin.ROUTES if "{" not in r.path},
    }


# Templated routes (``/admin/teams/{id}``), matched segment by segment after the exact table misses;
# a ``{name}`` segment matches any one non-empty segment and is passed in ``scope["path_params"]``.
_TEMPLATES: tuple[tuple[str, tuple[str, ...], RouteSpec], ...] = tuple(
    (r.method, tuple(r.path.strip("/").split("/")), RouteSpec(r.handler(), "admin", "admin"))
    for r in admin.ROUTES
    if "{" in r.path
)
# The admin UI's files (``/ui/app.js``): any one name under /ui/, looked up in the package by api/ui.py.
_UI_ASSET = RouteSpec(ui_asset, "health", "ui")


def served_routes() -> set[tuple[str, str]]:
    """Every (method, path template) the app answers; api/openapi.py must describe each (a test checks)."""
    return {*_routes(), *((m, "/" + "/".join(t)) for m, t, _ in _TEMPLATES), ("GET", UI_PREFIX + "{asset}")}


def _template_params(template: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(template) != len(parts):
        return None
    params: dict[str, str] = {}
    for want, got in zip(template, parts, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


class TollgateApp:
    """The gateway as a pure ASGI callable."""

    def __init__(self, gateway: Gateway, settings: StaticSettings) -> None:
        self.gateway = gateway
        self.settings = settings
        self.routes = _routes()
        self.in_flight = metrics.in_flight_gauge(gateway)
        self._paths = {path for _, path in self.routes}
        # Lifespan progress: the server flushes a gateway whose shutdown a forced exit skipped.
        self.started = False
        self.stopped = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _match(self, method: str, path: str, scope: Scope) -> RouteSpec | None:
        spec = self.routes.get((method, path))
        if spec is None and path.startswith("/admin/"):
            parts = path.strip("/").split("/")
            for want_method, template, candidate in _TEMPLATES:
                if want_method == method and (params := _template_params(template, parts)) is not None:
                    scope["path_params"] = params
                    return candidate
        if spec is None and method == "GET" and path.startswith(UI_PREFIX):
            return _UI_ASSET
        return spec

    def _known_path(self, path: str) -> bool:
        """Whether some method serves this path (so another method gets 405, not 404)."""
        if path in self._paths:
            return True
        if path.startswith(UI_PREFIX):
            return True
        parts = path.strip("/").split("/")
        return path.startswith("/admin/") and any(_template_params(t, parts) is not None for _, t, _ in _TEMPLATES)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        gw = self.gateway
        method = scope["method"]
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = request.path = path.rstrip("/")
        spec = self._match(method, path, scope)
        ctx = RequestContext(
            request_id=request.request_id(),
            front_door=spec.front_door if spec else "openai",
            endpoint=spec.endpoint if spec else "unknown",
            config_version=gw.snapshot.version,
        )
        if spec is None:
            if self._known_path(path):
                err: TollgateError = NotFoundError(f"Method {method} is not allowed on {path}.")
                err.status, err.code = 405, "method_not_allowed"
            else:
                err = NotFoundError(f"Unknown endpoint {method} {path}. See the README for the gateway's endpoints.")
            await _send_error(send, ctx, err, openai_error)
            return
        traced = gw.tracing
        trace = None
        if spec.front_door != "health":
            self.in_flight.inc()
            if traced is not None:
                trace = traced.begin(ctx, method, path, request.headers)
        try:
            await spec.handler(gw, request, ctx)
        except TollgateError as exc:
            ctx.status, ctx.error_type = exc.status, exc.type
            await _send_error(send, ctx, exc, spec.render)
        except Exception:
            log.exception("unhandled error (request %s)", ctx.request_id)
            internal = InternalError(f"The gateway failed to handle this request (request id {ctx.request_id}).")
            ctx.status, ctx.error_type = 500, internal.type
            await _send_error(send, ctx, internal, spec.render)
        finally:
            if spec.front_door != "health":
                self.in_flight.dec()
                gw.finalize(ctx)
                if trace is not None and traced is not None:
                    traced.end(trace, ctx)  # after FINALIZE: the spans carry the priced outcome

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.started = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if not self.stopped:
                    self.stopped = True
                    await self.gateway.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send_error(send: Send, ctx: RequestContext, err: TollgateError, render: ErrorRenderer) -> None:
    headers = JSON_HEADERS + ctx.response_headers()
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
    try:
        await send_bytes(send, err.status, orjson.dumps(render(err)), headers)
    except Exception:
        # The response had already started (or the client is gone): nothing more can be said to it.
        log.debug("could not send error for request %s", ctx.request_id)


def create_app(
    config: TollgateConfig | None = None, env: Mapping[str, str] | None = None, config_path: str | None = None
) -> tuple[TollgateApp, str, bool]:
    """Build the app. Returns it, the master key and whether that key was generated now (print it once).

    ``config_path``: the file ``config`` was loaded from, for hot reload (``POST /admin/reload``)."""
    env = os.environ if env is None else env
    config = config or TollgateConfig()
    settings = static_settings(config, env)
    master_key, generated = load_or_create_master_key(config, settings, env)
    gateway = build_gateway(config, env, settings, master_key, config_path)
    return TollgateApp(gateway, settings), master_key, generated
