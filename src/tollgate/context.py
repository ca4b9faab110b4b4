"""The per-request context: who is calling, what was asked, where it went, what it cost. One per request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tollgate.providers.base import Deployment
from tollgate.types import JSONObject
from tollgate.wire.openai import Usage


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller. Teams, orgs and roles beyond admin/user arrive with the governance work."""

    key_id: str
    name: str
    role: str  # "admin" (master key or admin key) or "user"
    user_id: str | None = None
    team_id: str | None = None
    allowed_models: tuple[str, ...] = ()
    metadata: JSONObject = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    front_door: str  # "openai", "anthropic" or "simple"
    endpoint: str  # "chat", "embeddings", "completions", "messages"
    config_version: str
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    requested_model: str | None = None
    deployment: Deployment | None = None
    attempts: int = 0
    fallback: bool = False
    usage: Usage | None = None
    status: int = 200
    error_type: str | None = None
    first_byte_at: float | None = None
    stream: bool = False
    client_disconnected: bool = False

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-request-id", self.request_id.encode())]
        dep = self.deployment
        if dep is not None:
            headers.append((b"x-tollgate-provider", dep.provider.encode()))
            headers.append((b"x-tollgate-model", dep.model.encode()))
            headers.append((b"x-tollgate-attempts", str(self.attempts).encode()))
            if self.fallback:
                headers.append((b"x-tollgate-fallback", b"true"))
        return headers

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0
