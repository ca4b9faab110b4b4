"""The gateway: the live config snapshot, the pipeline's phases, and what the front doors call."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import orjson

from tollgate.context import Principal, RequestContext
from tollgate.core.auth import Authenticator, key_from_headers
from tollgate.core.dispatch import Dispatcher
from tollgate.core.phases import AdmitPolicy, FinalizePolicy, StreamFilterFactory
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport
from tollgate.policies.model_access import ModelAccessPolicy, model_allowed
from tollgate.routing.resolver import Route
from tollgate.state.factory import ManagedKeyStore
from tollgate.types import JSONObject

access_log = logging.getLogger("tollgate.access")

# /chat's default model when neither the request nor the config names one: the first provider found here.
_DEFAULT_BY_PROVIDER = (
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-haiku-4-5"),
    ("gemini", "gemini-2.5-flash"),
)


class Gateway:
    def __init__(
        self,
        snapshot: Snapshot,
        transport: Transport,
        keys: ManagedKeyStore,
        master_key: str,
        max_body_bytes: int,
    ) -> None:
        self.transport = transport
        self.keys = keys
        self.authenticator = Authenticator(keys, master_key)
        self.max_body_bytes = max_body_bytes
        self.admit_policies: tuple[AdmitPolicy, ...] = (ModelAccessPolicy(),)
        # Per-request stream filters (output guards) run on canonical chunks; while none is active,
        # streams whose format matches the client's are relayed as the provider's own bytes.
        self.stream_filters: tuple[StreamFilterFactory, ...] = ()
        self.finalize_policies: tuple[FinalizePolicy, ...] = ()
        self.snapshot = snapshot
        self.dispatcher = Dispatcher(snapshot, transport)
        self.draining = False

    def swap(self, snapshot: Snapshot) -> None:
        """Install a new config snapshot; in-flight requests keep the one they started with."""
        self.snapshot = snapshot
        self.dispatcher = Dispatcher(snapshot, self.transport)

    # Phase 1: AUTHENTICATE
    async def authenticate(self, ctx: RequestContext, headers: Mapping[bytes, bytes]) -> Principal:
        principal = await self.authenticator.authenticate(key_from_headers(headers))
        ctx.principal = principal
        return principal

    # Resolution + phase 2: ADMIT
    def route(self, ctx: RequestContext, model: str) -> Route:
        ctx.requested_model = model
        route = self.snapshot.resolve(model)
        for policy in self.admit_policies:
            policy.admit(ctx, route)
        return route

    def default_model(self) -> str:
        snap = self.snapshot
        if snap.config.settings.default_model:
            return snap.config.settings.default_model
        if snap.config.models:
            return next(iter(snap.config.models))
        for provider, model in _DEFAULT_BY_PROVIDER:
            if provider in snap.providers:
                return model
        return "demo/tollgate-demo"

    def visible_models(self, principal: Principal) -> list[JSONObject]:
        models = self.snapshot.models()
        if not principal.allowed_models:
            return models
        return [m for m in models if model_allowed(principal.allowed_models, str(m["id"]))]

    # Phase 7: FINALIZE — must not raise.
    def finalize(self, ctx: RequestContext) -> None:
        for policy in self.finalize_policies:
            try:
                policy.on_finalize(ctx)
            except Exception:  # a broken policy must never break the request or the other policies
                logging.getLogger("tollgate").exception("finalize policy %s failed", type(policy).__name__)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(_access_line(ctx))


def _access_line(ctx: RequestContext) -> str:
    dep = ctx.deployment
    usage = ctx.usage
    record: JSONObject = {
        "ts": round(time.time(), 3),
        "request_id": ctx.request_id,
        "front_door": ctx.front_door,
        "endpoint": ctx.endpoint,
        "key_id": ctx.principal.key_id if ctx.principal else None,
        "model": ctx.requested_model,
        "provider": dep.provider if dep else None,
        "upstream_model": dep.model if dep else None,
        "attempts": ctx.attempts,
        "status": ctx.status,
        "error": ctx.error_type,
        "stream": ctx.stream,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "latency_ms": round(ctx.elapsed_ms, 2),
        "config_version": ctx.config_version,
    }
    if ctx.client_disconnected:
        record["client_disconnected"] = True
    return orjson.dumps(record).decode()
