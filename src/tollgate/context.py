"""The per-request context: who is calling, what was asked, where it went, what it cost. One per request."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tollgate.providers.base import Deployment
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage

Scope = Literal["key", "user", "team", "org"]


@dataclass(frozen=True, slots=True)
class Limit:
    """Rate limits of one scope (a key, user, team or org); ``None`` means unlimited."""

    scope: Scope
    scope_id: str
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (input + output) per minute
    input_tpm: int | None = None
    output_tpm: int | None = None
    max_parallel: int | None = None  # requests in flight at once


@dataclass(frozen=True, slots=True)
class Budget:
    """A USD spending limit of one scope over a period."""

    scope: Scope
    scope_id: str
    limit_usd: float
    period: Literal["daily", "weekly", "monthly", "total"] = "monthly"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: the key, and the user, team and org it belongs to."""

    key_id: str
    name: str
    role: str  # "admin" (master key or admin key) or "user"
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    allowed_models: tuple[str, ...] = ()
    metadata: JSONObject = field(default_factory=dict)
    # Every limit and budget that applies to this caller (its key's, user's, team's and org's): all
    # apply at once, the tightest wins. Resolved at authentication and cached with the principal.
    limits: tuple[Limit, ...] = ()
    budgets: tuple[Budget, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


GuardrailPhase = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class GuardrailDecision:
    """One guardrail's decision about one request, for metrics and the audit log: what acted and how, never
    the text it acted on. A guard that lets a request through untouched records nothing (metrics count
    ``allow`` from the requests that carry no decision of that guard)."""

    guardrail: str  # "pii", "injection", "code", ...: the guard's name in the config
    action: str  # what was done: "mask", "redact", "hash", "block", "flag", ...
    phase: GuardrailPhase  # "input" (the prompt, before the provider) or "output" (the answer)
    rules: tuple[str, ...]  # rule ids or entity types that fired (e.g. "EMAIL", "inj.override")
    count: int = 1  # how many findings (e.g. values masked)
    payload_hash: str = ""  # sha256 of what was inspected, to correlate without storing it


def payload_hash(texts: Iterable[str]) -> str:
    """The ``payload_hash`` of a decision: SHA-256 (hex) of the inspected texts, in order, joined by a newline.
    Computed only when a decision is recorded, so a request nothing fires on pays nothing for it."""
    return hashlib.sha256("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class ShadowCapture:
    """A request sampled for shadow traffic (policies/shadow.py): the request as dispatched (after the
    guardrails) and the primary's answer text, to replay to the candidate and compare afterwards."""

    body: JSONObject | None = None
    text: list[str] = field(default_factory=list)
    answered: bool = False  # the primary's answer text was seen (a complete answer or a stream's end)


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
    started_at: float = field(default_factory=time.time)  # wall clock, for records
    # Set by the front door before ADMIT, so limits and budgets can reserve before the call.
    estimated_prompt_tokens: int = 0
    max_output_tokens: int | None = None
    metadata: JSONObject | None = None  # the client's request metadata (tags for records)
    # The client's headers (set at AUTHENTICATE) and decoded body (set before ADMIT), read by routing rules.
    headers: Mapping[bytes, bytes] | None = None
    body: JSONObject | None = None
    cost_usd: float | None = None
    cache_hit: bool = False
    # On a cache hit: what the answer would have cost at the model's price (the ledger records it as saved).
    cost_saved_nanos: int = 0
    # Headers policies add to every response (e.g. rate-limit state).
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # What the guardrails did to this request (INSPECT and RESPOND), read in FINALIZE by metrics and audit.
    guardrail_decisions: list[GuardrailDecision] = field(default_factory=list)
    # With server.log_bodies: what the provider saw (after INSPECT) and answered (before RESPOND), for the log.
    logged_request: JSONValue = None
    logged_response: JSONValue = None
    # Routing (set by DISPATCH): whether the attempt loop ran, and the traffic-split arm the request was
    # assigned to (the deployment key the split picked; routing/split.py), for metrics and the ledger.
    routed: bool = False
    route_arm: str | None = None
    shadow: ShadowCapture | None = None  # set when the request is mirrored to a shadow candidate
    # The caller's pipeline (core/pipeline.py), chosen at AUTHENTICATE and kept to the end of the request, and
    # its guardrail profile when not the default one (the cache keeps answers of different profiles apart).
    pipeline: object = None
    guard_profile: str | None = None
    # Set by a guard in INSPECT (the injection guard's reroute action): the model to send the request to instead.
    reroute_model: str | None = None

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-request-id", self.request_id.encode()), *self.extra_headers]
        dep = self.deployment
        if dep is not None:
            headers.append((b"x-tollgate-provider", dep.provider.encode()))
            headers.append((b"x-tollgate-model", dep.model.encode()))
            headers.append((b"x-tollgate-attempts", str(self.attempts).encode()))
            if self.fallback:
                headers.append((b"x-tollgate-fallback", b"true"))
            # The config version that made the routing decision (it changes with every reload).
            headers.append((b"x-tollgate-config-version", self.config_version.encode()))
        return headers

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0
