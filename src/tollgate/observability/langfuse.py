"""Export of model calls to Langfuse as generations, through its public ingestion API.

Each finished model call (FINALIZE) becomes two events, a ``trace-create`` and a ``generation-create``,
queued in memory; a background task sends them in batches (``POST {host}/api/public/ingestion``, HTTP basic
auth with the project's public and secret keys) every ``flush_interval_seconds`` or as soon as
``batch_size`` generations wait. The request path only appends to a bounded queue: when Langfuse is slow or down
the queue fills and further generations are dropped and counted (``dropped``), never waited for. A batch
that fails on the network, with 429 or a 5xx is retried with exponential backoff; Langfuse answers input
errors per event in a 207 multi-status body, counted in ``rejected``. ``stop`` flushes what is queued.
These counters (and ``failed_batches``) are exported on ``/metrics`` as ``tollgate_langfuse_*``.

Content (the prompt and the answer) is sent only with ``capture_content``; then it is the text the provider
saw and wrote, i.e. after PII masking: this policy reads the body at the end of INSPECT (after the PII
guard) and the answer at the start of RESPOND (before placeholders are restored).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections import deque
from datetime import UTC, datetime

import aiohttp
import orjson

from tollgate.config.schema import LangfuseConfig
from tollgate.context import RequestContext
from tollgate.observability.tracing import current_trace_id
from tollgate.types import JSONObject, JSONValue

log = logging.getLogger("tollgate.langfuse")

INGESTION_PATH = "/api/public/ingestion"
# The model calls exported (admin calls, model lists and token counts are not generations).
GENERATION_ENDPOINTS = frozenset({"chat", "embeddings", "completions", "messages", "simple_chat"})
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
_MAX_STOP_SECONDS = 10.0
_JSON = {"content-type": "application/json"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LangfuseExporter:
    """FINALIZE policy and gateway service; with ``capture_content`` also an INSPECT/RESPOND policy and
    a stream filter factory (see ``core/assembly.py`` for where each sits in its phase)."""

    def __init__(self, config: LangfuseConfig, *, retry_base_seconds: float = 0.5) -> None:
        self.url = config.host.rstrip("/") + INGESTION_PATH
        credentials = f"{config.public_key or ''}:{config.secret_key or ''}".encode()
        self._headers = {"authorization": "Basic " + base64.b64encode(credentials).decode(), **_JSON}
        self.capture_content = config.capture_content
        self.batch_size = config.batch_size
        self.max_queue = config.max_queue
        self.flush_interval = config.flush_interval_seconds
        self.max_retries = config.max_retries
        self.retry_base = retry_base_seconds
        self._queue: deque[list[JSONObject]] = deque()  # per generation: its trace and generation events
        self._inputs: dict[str, JSONValue] = {}  # request id → what the provider was sent (capture_content)
        self._outputs: dict[str, str] = {}  # request id → what the provider answered (capture_content)
        self._session: aiohttp.ClientSession | None = None
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.exported = 0  # events Langfuse accepted
        self.rejected = 0  # events Langfuse refused (207 errors, or a batch refused with a 4xx)
        self.dropped = 0  # generations not queued (queue full, or after stop) or lost after the last retry
        self.batches = 0  # requests sent (retries included)
        self.failed_batches = 0  # batches lost after the last retry, or refused whole with a 4xx

    # --- FINALIZE -------------------------------------------------------------------------------------

    def on_finalize(self, ctx: RequestContext) -> None:
        sent_in = self._inputs.pop(ctx.request_id, None)
        answer = self._outputs.pop(ctx.request_id, None)
        if ctx.endpoint not in GENERATION_ENDPOINTS or ctx.principal is None:
            return  # not a model call, or refused before the caller was known
        if not self._running or len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(self.events(ctx, sent_in, answer))
        if len(self._queue) >= self.batch_size and self._event is not None:
            self._event.set()

    def events(self, ctx: RequestContext, sent_in: JSONValue = None, answer: str | None = None) -> list[JSONObject]:
        """The trace and generation events of one finished call."""
        principal, dep, usage = ctx.principal, ctx.deployment, ctx.usage
        start = ctx.started_at
        end = start + ctx.elapsed_ms / 1000.0
        trace_id = current_trace_id() or ctx.request_id
        tenant: JSONObject = {}
        if principal is not None:
            tenant = {
                "key_id": principal.key_id,
                "user_id": principal.user_id,
                "team_id": principal.team_id,
                "org_id": principal.org_id,
            }
        metadata: JSONObject = {
            "request_id": ctx.request_id,
            **tenant,
            "requested_model": ctx.requested_model,
            "provider": dep.provider if dep else None,
            "status": ctx.status,
            "error_type": ctx.error_type,
            "stream": ctx.stream,
            "cache_hit": ctx.cache_hit,
            "attempts": ctx.attempts,
            "fallback": ctx.fallback,
            "front_door": ctx.front_door,
            "config_version": ctx.config_version,
            "latency_ms": round(ctx.elapsed_ms, 3),
        }
        user = (principal.user_id or principal.key_id) if principal is not None else None
        trace: JSONObject = {
            "id": trace_id,
            "timestamp": _iso(start),
            "name": f"tollgate {ctx.endpoint}",
            "userId": user,
            "metadata": {k: v for k, v in metadata.items() if k in ("request_id", *tenant)},
            "tags": [f"team:{principal.team_id}"] if principal is not None and principal.team_id else [],
        }
        generation: JSONObject = {
            "id": ctx.request_id,
            "traceId": trace_id,
            "name": ctx.endpoint,
            "startTime": _iso(start),
            "endTime": _iso(end),
            "model": dep.model if dep else ctx.requested_model,
            "metadata": metadata,
            "level": "ERROR" if ctx.status >= 400 else "DEFAULT",
        }
        if ctx.first_byte_at is not None:
            generation["completionStartTime"] = _iso(start + max(0.0, ctx.first_byte_at - ctx.started))
        if ctx.error_type:
            generation["statusMessage"] = f"{ctx.status} {ctx.error_type}"
        if usage is not None:
            generation["usageDetails"] = {
                "input": usage.prompt_tokens,
                "output": usage.completion_tokens,
                "total": usage.total_tokens,
            }
        if ctx.cost_usd is not None:
            generation["costDetails"] = {"total": ctx.cost_usd}
        if self.capture_content:
            if sent_in is not None:
                generation["input"] = trace["input"] = sent_in
            if answer is not None:
                generation["output"] = trace["output"] = answer
        now = _iso(time.time())
        return [
            {"id": uuid.uuid4().hex, "type": "trace-create", "timestamp": now, "body": trace},
            {"id": uuid.uuid4().hex, "type": "generation-create", "timestamp": now, "body": generation},
        ]

    # --- content capture (only registered with capture_content) ----------------------------------------

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        """Last in INSPECT: the body as the provider will see it (PII already masked)."""
        for field in ("messages", "input", "prompt"):
            if field in req_body:
                self._inputs[ctx.request_id] = req_body[field]
                break
        return req_body

    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """First in RESPOND: the answer as the provider wrote it (before PII placeholders are restored)."""
        choices = completion.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            content = message.get("content") if isinstance(message, dict) else choices[0].get("text")
            if isinstance(content, str):
                self._outputs[ctx.request_id] = content
        return None

    def stream_filter(self, ctx: RequestContext) -> _AnswerRecorder:
        return _AnswerRecorder(self._outputs, ctx.request_id)

    # --- the sender -----------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        if self._running:
            return
        self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        self._event = asyncio.Event()
        self._running = True
        self._task = asyncio.create_task(self._run(), name="tollgate-langfuse-exporter")

    async def stop(self) -> None:
        """Send what is queued (within a bound), then close. Safe to call twice."""
        if not self._running:
            return
        self._running = False
        if self._event is not None:
            self._event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, _MAX_STOP_SECONDS)
            except TimeoutError:
                log.warning("Langfuse export: stopped before the queue was sent")
            self._task = None
        self.dropped += len(self._queue)
        self._queue.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.dropped or self.rejected:
            log.warning("Langfuse export: %d generations dropped, %d events rejected", self.dropped, self.rejected)

    async def _run(self) -> None:
        assert self._event is not None
        while self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=self.flush_interval)
            self._event.clear()
            await self.flush()
        await self.flush()  # stopping: what was queued before stop

    async def flush(self) -> None:
        """Send everything queued now, batch by batch."""
        while self._queue:
            pairs = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            await self._send([event for pair in pairs for event in pair], len(pairs))

    async def _send(self, batch: list[JSONObject], generations: int) -> None:
        session = self._session
        if session is None:
            self.dropped += generations
            return
        payload = orjson.dumps({"batch": batch, "metadata": {"sdk": "tollgate"}})
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_base * 2 ** (attempt - 1))
            self.batches += 1
            try:
                async with session.post(self.url, data=payload, headers=self._headers) as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("Langfuse export: %s (attempt %d)", type(exc).__name__, attempt + 1)
                continue
            if status in _RETRY_STATUSES:
                continue
            if status in (200, 201, 207):
                self._count(body, len(batch))
                return
            # 400, 401, 403, 404…: the same batch would be refused again (wrong keys, wrong host).
            self.rejected += len(batch)
            self.failed_batches += 1
            log.warning("Langfuse export: a batch of %d events was refused with HTTP %d", len(batch), status)
            return
        self.dropped += generations
        self.failed_batches += 1
        log.warning("Langfuse export: a batch of %d events was lost after %d attempts", len(batch), attempt + 1)

    def _count(self, body: bytes, sent: int) -> None:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.exported += sent
            return
        errors = answer.get("errors") if isinstance(answer, dict) else None
        successes = answer.get("successes") if isinstance(answer, dict) else None
        failed = len(errors) if isinstance(errors, list) else 0
        if failed:
            first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
            log.warning("Langfuse export: %d events refused (first: %s)", failed, first.get("message"))
        self.rejected += failed
        self.exported += len(successes) if isinstance(successes, list) else sent - failed


class _AnswerRecorder:
    """A stream filter that passes chunks through and keeps the answer's text (first choice)."""

    __slots__ = ("_outputs", "_parts", "_request_id")

    def __init__(self, outputs: dict[str, str], request_id: str) -> None:
        self._outputs = outputs
        self._request_id = request_id
        self._parts: list[str] = []

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        for chunk in chunks:
            choices = chunk.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                delta = choices[0].get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choices[0].get("text")
                if isinstance(text, str):
                    self._parts.append(text)
        self._outputs[self._request_id] = "".join(self._parts)
        return chunks

    def flush(self) -> list[JSONObject]:
        return []
