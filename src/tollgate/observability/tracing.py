"""OpenTelemetry traces: one server span per request, child spans per policy, cache lookup and provider call.

Off unless asked for (``tracing.enabled``; ``auto`` turns it on when the standard ``OTEL_EXPORTER_OTLP_*``
endpoint variables are set). The SDK and the OTLP/HTTP exporter are an optional extra
(``pip install 'tollgate[otel]'``) and are imported only when tracing is on; the exporter reads the
standard ``OTEL_*`` variables itself (endpoint, headers, timeout, ``OTEL_SERVICE_NAME``, batching).

Spans (docs/observability.md has the attribute table):

* ``POST /v1/chat/completions`` (SERVER): the whole request, child of the caller's W3C ``traceparent``;
  tenant ids, the model asked for, status, usage and cost, cache hit.
* ``admit <Policy>``, ``inspect <Policy>``, ``cache lookup``: the pipeline's phases.
* ``chat <model>`` (CLIENT), one per provider attempt, named and attributed after the OpenTelemetry GenAI
  conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.usage.input_tokens``...); its context goes upstream as ``traceparent``, so a provider or
  proxy that traces joins the same trace. A streamed answer's span ends when the stream does.

Prompts and answers are never put on spans. With tracing off, the hooks cost one context-variable read.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from tollgate.context import RequestContext
from tollgate.providers.base import Deployment
from tollgate.wire.openai import Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("tollgate.tracing")

# The OpenTelemetry GenAI registry's provider names, by Tollgate provider type.
GENAI_PROVIDERS = {
    "openai": "openai",
    "openai_compatible": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "demo": "tollgate.demo",
}
OPERATIONS = {"chat": "chat", "messages": "chat", "simple_chat": "chat", "embeddings": "embeddings"}
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_CURRENT: ContextVar[RequestTrace | None] = ContextVar("tollgate_trace", default=None)


def wanted(setting: bool | str, env: Mapping[str, str]) -> bool:
    """Whether tracing is on for ``tracing.enabled`` = ``setting`` (``auto``, true or false)."""
    if setting is False or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if setting is True:
        return True
    return any(env.get(name) for name in OTLP_ENDPOINT_VARIABLES) and env.get("OTEL_TRACES_EXPORTER") != "none"


class Tracing:
    """The process's tracer. ``provider`` is for tests (an in-memory exporter); without it one is built
    from the environment with a batching OTLP/HTTP exporter."""

    def __init__(self, provider: TracerProvider | None = None, env: Mapping[str, str] | None = None) -> None:
        try:
            from opentelemetry.propagators.textmap import DefaultGetter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise RuntimeError(
                "Tracing is on but OpenTelemetry is not installed: pip install 'tollgate[otel]' "
                "(or set tracing.enabled: false)."
            ) from exc
        if provider is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            env = os.environ if env is None else env
            name = env.get("OTEL_SERVICE_NAME") or "tollgate"
            provider = SdkTracerProvider(resource=Resource.create({"service.name": name}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.provider = provider
        from tollgate import __version__

        self.tracer: Tracer = provider.get_tracer("tollgate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()
        self._kinds = SpanKind
        self._status = (Status, StatusCode)

    def begin(self, ctx: RequestContext, method: str, path: str, headers: Mapping[bytes, bytes]) -> RequestTrace:
        """Start the request's server span (continuing the caller's trace) and make it current."""
        carrier = {}
        for name in (b"traceparent", b"tracestate"):
            value = headers.get(name)
            if value is not None:
                carrier[name.decode()] = value.decode("latin-1")
        parent = self._propagator.extract(carrier, getter=self._getter) if carrier else None
        span = self.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=self._kinds.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "tollgate.request_id": ctx.request_id,
                "tollgate.config_version": ctx.config_version,
            },
        )
        trace = RequestTrace(self, span)
        trace.token = _CURRENT.set(trace)
        return trace

    def end(self, trace: RequestTrace, ctx: RequestContext) -> None:
        """Record the outcome on the open spans and end them (FINALIZE, after every other policy)."""
        span = trace.root
        attrs: dict[str, Any] = {"http.response.status_code": ctx.status, "tollgate.cache_hit": ctx.cache_hit}
        principal = ctx.principal
        if principal is not None:
            for name, value in (("team", principal.team_id), ("org", principal.org_id), ("user", principal.user_id)):
                if value:
                    attrs[f"tollgate.{name}_id"] = value
        if ctx.requested_model:
            attrs["gen_ai.request.model"] = ctx.requested_model
        if ctx.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = ctx.usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = ctx.usage.completion_tokens
        if ctx.cost_usd is not None:
            attrs["tollgate.cost_usd"] = ctx.cost_usd
        if ctx.client_disconnected:
            attrs["tollgate.client_disconnected"] = True
        if ctx.error_type:
            attrs["error.type"] = ctx.error_type
        span.set_attributes(attrs)
        status, code = self._status
        if ctx.status >= 500:
            span.set_status(status(code.ERROR))
        attempt = trace.open_attempt
        if attempt is not None:  # a stream: its provider span covers the whole generation
            if ctx.usage is not None:
                attempt.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": ctx.usage.prompt_tokens,
                        "gen_ai.usage.output_tokens": ctx.usage.completion_tokens,
                    }
                )
            attempt.end()
        span.end()
        if trace.token is not None:
            with contextlib.suppress(ValueError):  # reset from another context: the variable dies with it
                _CURRENT.reset(trace.token)

    def shutdown(self) -> None:
        """Flush what is batched (at exit)."""
        try:
            self.provider.shutdown()
        except Exception:
            log.exception("flushing traces failed")


class RequestTrace:
    """The spans of one request."""

    __slots__ = ("open_attempt", "root", "token", "tracing")

    def __init__(self, tracing: Tracing, root: Span) -> None:
        self.tracing = tracing
        self.root = root
        self.token: Any = None
        self.open_attempt: Span | None = None

    def _child(self, name: str, kind: Any = None, attributes: Mapping[str, Any] | None = None) -> Span:
        from opentelemetry.trace import set_span_in_context

        tracing = self.tracing
        return tracing.tracer.start_span(
            name,
            context=set_span_in_context(self.root),
            kind=kind if kind is not None else tracing._kinds.INTERNAL,
            attributes=attributes,
        )


@contextlib.contextmanager
def span(name: str) -> Iterator[Span | None]:
    """A child span of the current request's, around a phase (``None`` when the request is not traced)."""
    trace = _CURRENT.get()
    if trace is None:
        yield None
        return
    child = trace._child(name)
    try:
        yield child
    except BaseException as exc:
        child.set_attribute("error.type", getattr(exc, "type", type(exc).__name__))
        raise
    finally:
        child.end()


def active() -> bool:
    """Whether the current request is traced (for hooks that would otherwise do work for nothing)."""
    return _CURRENT.get() is not None


def current_trace_id() -> str | None:
    """The current request's trace id (32 hex digits, as in traceparent), or None when it is not traced."""
    trace = _CURRENT.get()
    return None if trace is None else f"{trace.root.get_span_context().trace_id:032x}"


class Attempt:
    """One provider call's span; ``traceparent`` goes upstream with the call."""

    __slots__ = ("span", "trace", "traceparent")

    def __init__(self, trace: RequestTrace, ctx: RequestContext, deployment: Deployment, attempt: int) -> None:
        operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": GENAI_PROVIDERS.get(deployment.provider_type, deployment.provider_type),
            "gen_ai.request.model": deployment.model,
            "tollgate.provider": deployment.provider,
            "tollgate.attempt": attempt,
        }
        if ctx.max_output_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = ctx.max_output_tokens
        if deployment.base_url:
            from urllib.parse import urlsplit

            parts = urlsplit(deployment.base_url)
            if parts.hostname:
                attrs["server.address"] = parts.hostname
                if parts.port:
                    attrs["server.port"] = parts.port
        self.trace = trace
        self.span = trace._child(f"{operation} {deployment.model}", trace.tracing._kinds.CLIENT, attrs)
        version = "00"
        sc = self.span.get_span_context()
        flags = "01" if sc.trace_flags.sampled else "00"
        self.traceparent = f"{version}-{sc.trace_id:032x}-{sc.span_id:016x}-{flags}"

    def failed(self, error_type: str) -> None:
        status, code = self.trace.tracing._status
        self.span.set_attribute("error.type", error_type)
        self.span.set_status(status(code.ERROR))
        self.span.end()

    def succeeded(self, usage: Usage | None, streaming: bool) -> None:
        if usage is not None:
            self.span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                }
            )
        if streaming:  # ends with the stream, in Tracing.end
            self.trace.open_attempt = self.span
        else:
            self.span.end()

    def abandoned(self) -> None:
        self.span.set_attribute("tollgate.cancelled", True)
        self.span.end()


def attempt(ctx: RequestContext, deployment: Deployment) -> Attempt | None:
    """The span of a provider call about to be made, or None when the request is not traced."""
    trace = _CURRENT.get()
    if trace is None:
        return None
    return Attempt(trace, ctx, deployment, ctx.attempts)


_TRACEPARENT: ContextVar[str | None] = ContextVar("tollgate_traceparent", default=None)


def upstream_traceparent() -> str | None:
    """The ``traceparent`` of the provider call being made in this context, if it is traced."""
    return _TRACEPARENT.get()


def sending(attempt_: Attempt) -> Token[str | None]:
    """Make ``attempt_``'s traceparent the one sent upstream until ``done_sending``."""
    return _TRACEPARENT.set(attempt_.traceparent)


def done_sending(token: Token[str | None]) -> None:
    _TRACEPARENT.reset(token)
