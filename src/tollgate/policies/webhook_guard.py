"""INSPECT and RESPOND: an external policy service decides on requests and answers (allow, block or modify).

The gateway POSTs a JSON payload (the model, the texts, the caller's ids; never keys or secrets), signed with
HMAC-SHA256 when a secret is configured, and reads ``{"action": "allow" | "block" | "modify", ...}`` back.
A call that times out, fails or answers something unreadable is a failure: ``failure: closed`` refuses the
request (503), ``failure: open`` lets it through; both are recorded as decisions.

Streamed answers are reviewed whole, per ``stream_mode``: ``buffer`` holds the stream until the service
allowed it (``BufferedReview``: a refusal is a plain 403 before the first byte), ``post`` sends it as it comes
and asks at the end (``PostReview``: a refusal is a terminal error event).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Literal

import aiohttp
import orjson

from tollgate.config.guardrails import WebhookGuardConfig
from tollgate.context import GuardrailDecision, GuardrailPhase, RequestContext
from tollgate.errors import PermissionDeniedError, ServiceUnavailableError
from tollgate.policies.cache import CompletionAccumulator, PieceSource
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage

GUARDRAIL = "webhook"
SIGNATURE_HEADER = "x-tollgate-signature"
log = logging.getLogger("tollgate.guardrails")
_MAX_REASON = 300
Stage = Literal["request", "response"]


class WebhookFailure(Exception):
    """The service could not give a usable decision; ``rule`` says why (for the record, never a secret)."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


def sign(secret: str, body: bytes) -> str:
    """The ``x-tollgate-signature`` of a body: hex HMAC-SHA256 keyed with the configured secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _caller(ctx: RequestContext) -> JSONObject:
    p = ctx.principal
    if p is None:
        return {}
    return {"key_id": p.key_id, "key_name": p.name, "user_id": p.user_id, "team_id": p.team_id, "org_id": p.org_id}


def _valid_messages(value: JSONValue) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
    )


class WebhookGuardPolicy:
    """Built once per config version; one pooled HTTP session, opened on first use and closed at shutdown."""

    def __init__(self, config: WebhookGuardConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self.failures = 0
        self.blocked = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _payload(self, ctx: RequestContext, stage: Stage) -> JSONObject:
        return {
            "version": 1,
            "stage": stage,
            "request_id": ctx.request_id,
            "front_door": ctx.front_door,
            "endpoint": ctx.endpoint,
            "model": ctx.requested_model,
            "stream": ctx.stream,
            "caller": _caller(ctx),
            "metadata": ctx.metadata or {},
        }

    async def call(self, payload: JSONObject) -> JSONObject:
        """POST the payload and return the decision; raises ``WebhookFailure``."""
        cfg = self.config
        body = orjson.dumps(payload)
        headers = {"content-type": "application/json", "user-agent": "tollgate-guardrail", **cfg.headers}
        if cfg.secret:
            headers[SIGNATURE_HEADER] = sign(cfg.secret, body)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_seconds)
        try:
            async with self._session.post(cfg.url, data=body, headers=headers, timeout=timeout) as resp:
                raw = await resp.read()
                if not 200 <= resp.status < 300:
                    raise WebhookFailure(f"webhook.http_{resp.status}")
        except TimeoutError:
            raise WebhookFailure("webhook.timeout") from None
        except (aiohttp.ClientError, OSError):
            raise WebhookFailure("webhook.unreachable") from None
        try:
            decision = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise WebhookFailure("webhook.bad_reply") from None
        if not isinstance(decision, dict) or decision.get("action") not in ("allow", "block", "modify"):
            raise WebhookFailure("webhook.bad_reply")
        return decision

    def _failed(self, ctx: RequestContext, phase: GuardrailPhase, rule: str, started: float) -> None:
        """Fail open (record and go on) or closed (refuse with a 503)."""
        self.failures += 1
        ms = (time.perf_counter() - started) * 1000
        closed = self.config.failure == "closed"
        ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "block" if closed else "allow", phase, (rule,)))
        log.warning(
            "guardrail=webhook request_id=%s stage=%s failure=%s after_ms=%.0f fail_%s",
            ctx.request_id,
            phase,
            rule,
            ms,
            "closed" if closed else "open",
        )
        if closed:
            raise ServiceUnavailableError(
                "The request could not be checked by the policy service (guardrail_unavailable); try again later.",
                code="guardrail_unavailable",
            )

    def _block(self, ctx: RequestContext, phase: GuardrailPhase, decision: JSONObject, digest: str) -> None:
        self.blocked += 1
        reason = decision.get("reason")
        text = reason[:_MAX_REASON] if isinstance(reason, str) and reason else "no reason given"
        rule = decision.get("rule")
        rules = (rule[:100],) if isinstance(rule, str) and rule else ("webhook.block",)
        ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "block", phase, rules, 1, digest))
        what = "request" if phase == "input" else "answer"
        raise PermissionDeniedError(
            f"The {what} was blocked by the policy service (webhook_blocked): {text}",
            code="webhook_blocked",
        )

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        """INSPECT: the body (a copy with the service's messages or input when it modified them)."""
        if not self.config.on_request:
            return req_body
        payload = self._payload(ctx, "request")
        field = "input" if ctx.endpoint == "embeddings" else "messages"
        payload[field] = req_body.get(field)
        digest = hashlib.sha256(orjson.dumps(payload[field])).hexdigest()
        started = time.perf_counter()
        try:
            decision = await self.call(payload)
        except WebhookFailure as exc:
            self._failed(ctx, "input", exc.rule, started)
            return req_body
        action = decision["action"]
        if action == "block":
            self._block(ctx, "input", decision, digest)
        if action == "modify":
            new = decision.get(field)
            ok = _valid_messages(new) if field == "messages" else isinstance(new, str | list)
            if not ok:
                self._failed(ctx, "input", "webhook.bad_modify", started)
                return req_body
            ctx.guardrail_decisions.append(
                GuardrailDecision(GUARDRAIL, "modify", "input", ("webhook.modify",), 1, digest)
            )
            return {**req_body, field: new}
        return req_body

    async def decide_answer(self, ctx: RequestContext, completion: JSONObject, sent: bool = False) -> JSONObject | None:
        """Ask the service about an answer: ``None`` to let it through (allowed, or the call failed open), the
        decision when it asks to modify (with a string ``content``), or a 403 / 503. ``sent``: the stream was
        already sent (``stream_mode: post``), told to the service as ``answer_sent``."""
        answers = _answers(completion)
        payload = self._payload(ctx, "response")
        payload["answer"] = answers
        payload["answer_sent"] = sent
        digest = hashlib.sha256(orjson.dumps(answers)).hexdigest()
        started = time.perf_counter()
        try:
            decision = await self.call(payload)
        except WebhookFailure as exc:
            self._failed(ctx, "output", exc.rule, started)
            return None
        action = decision["action"]
        if action == "block":
            self._block(ctx, "output", decision, digest)
        if action != "modify":
            return None
        if not isinstance(decision.get("content"), str) or not answers:
            self._failed(ctx, "output", "webhook.bad_modify", started)
            return None
        rule = "webhook.modify_after_sent" if sent else "webhook.modify"
        ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "modify", "output", (rule,), 1, digest))
        return decision

    async def review(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """RESPOND (non-streamed): ``None`` to send the answer as is, a copy the service modified, or a 403."""
        if not self.config.on_response:
            return None
        decision = await self.decide_answer(ctx, completion)
        choices = completion.get("choices")
        if decision is None or not isinstance(choices, list) or not choices:
            return None
        first = choices[0]
        if not isinstance(first, dict) or not isinstance(message := first.get("message"), dict):
            return None
        content = decision["content"]
        return {**completion, "choices": [{**first, "message": {**message, "content": content}}, *choices[1:]]}

    def review_stream(self, ctx: RequestContext, stream: PieceSource) -> BufferedReview | PostReview | None:
        """RESPOND for a stream (``stream_mode``): a wrapper the front door awaits ``ready()`` on, then sends."""
        if not self.config.on_response:
            return None
        if self.config.stream_mode == "post":
            return PostReview(self, ctx, stream)
        return BufferedReview(self, ctx, stream)


def _answers(completion: JSONObject) -> list[JSONValue]:
    """What the service sees of an answer: per choice its text, tool calls and finish reason."""
    choices = completion.get("choices")
    answers: list[JSONValue] = []
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(message := choice.get("message"), dict):
                answers.append(
                    {
                        "index": choice.get("index", 0),
                        "content": message.get("content"),
                        "tool_calls": message.get("tool_calls"),
                        "finish_reason": choice.get("finish_reason"),
                    }
                )
    return answers


def _with_content(pieces: list[list[JSONObject]], content: str) -> list[list[JSONObject]]:
    """Buffered pieces with the first choice's text replaced: all of it in its first text delta (or its first
    chunk), the other text deltas emptied; chunks are kept, so the stream stays valid for every encoder."""
    placed = False
    out: list[list[JSONObject]] = []
    for piece in pieces:
        new_piece: list[JSONObject] = []
        for chunk in piece:
            choices = chunk.get("choices")
            if isinstance(choices, list):
                new_choices: list[JSONValue] = []
                for choice in choices:
                    if isinstance(choice, dict) and choice.get("index", 0) == 0:
                        delta = choice.get("delta")
                        base: JSONObject = delta if isinstance(delta, dict) else {}
                        if not placed:
                            choice = {**choice, "delta": {**base, "content": content}}
                            placed = True
                        elif isinstance(base.get("content"), str):
                            choice = {**choice, "delta": {**base, "content": ""}}
                    new_choices.append(choice)
                chunk = {**chunk, "choices": new_choices}
            new_piece.append(chunk)
        out.append(new_piece)
    return out


class BufferedReview:
    """``stream_mode: buffer``: ``ready()`` reads the whole stream and asks the service; a block (or a failure,
    closed) raises there, before the first byte, so the client gets a plain 403 (503). Then the pieces are
    replayed as they came (the text replaced, when the service modified it)."""

    def __init__(self, policy: WebhookGuardPolicy, ctx: RequestContext, inner: PieceSource) -> None:
        self._policy = policy
        self._ctx = ctx
        self._inner = inner
        self._pieces: list[list[JSONObject]] = []
        self.no_store = False  # set when the service modified the answer: not the model's, not cached

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    async def ready(self) -> None:
        answer = CompletionAccumulator()
        async for piece in self._inner:
            answer.feed(piece)
            self._pieces.append(piece)
        decision = await self._policy.decide_answer(self._ctx, answer.completion())
        if decision is not None:
            self.no_store = True
            self._pieces = _with_content(self._pieces, str(decision["content"]))

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        pieces, self._pieces = self._pieces, []
        for piece in pieces:
            yield piece

    async def aclose(self) -> None:
        await self._inner.aclose()


def _ending(chunk: JSONObject) -> bool:
    """Whether a chunk ends the answer: a choice's finish, or the usage chunk after them."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return True
    return any(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)


class PostReview:
    """``stream_mode: post``: the stream goes out as it comes, but from the first finish chunk on (the finish,
    usage) it is held until the service decided on the whole answer; a block (or a failure, closed) is then
    a terminal error event, so the client never sees a finished answer the service refused. What was sent
    stays sent: a ``modify`` cannot be applied and is recorded as ``webhook.modify_after_sent``."""

    def __init__(self, policy: WebhookGuardPolicy, ctx: RequestContext, inner: PieceSource) -> None:
        self._policy = policy
        self._ctx = ctx
        self._inner = inner
        self.no_store = False

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    async def ready(self) -> None:
        return None

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        answer = CompletionAccumulator()
        held: list[JSONObject] = []
        async for piece in self._inner:
            answer.feed(piece)
            if not held:
                for i, chunk in enumerate(piece):
                    if _ending(chunk):
                        held, piece = piece[i:], piece[:i]
                        break
            else:
                held += piece
                piece = []
            if piece:
                yield piece
        if await self._policy.decide_answer(self._ctx, answer.completion(), sent=True) is not None:
            self.no_store = True
        if held:
            yield held

    async def aclose(self) -> None:
        await self._inner.aclose()
