"""INSPECT and RESPOND: an external policy service decides on requests and answers (allow, block or modify).

The gateway POSTs a JSON payload (the model, the texts, the caller's ids; never keys or secrets), signed with
HMAC-SHA256 when a secret is configured, and reads ``{"action": "allow" | "block" | "modify", ...}`` back.
A call that times out, fails or answers something unreadable is a failure: ``failure: closed`` refuses the
request (503), ``failure: open`` lets it through; both are recorded as decisions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Literal

import aiohttp
import orjson

from tollgate.config.guardrails import WebhookGuardConfig
from tollgate.context import GuardrailDecision, GuardrailPhase, RequestContext
from tollgate.errors import PermissionDeniedError, ServiceUnavailableError
from tollgate.types import JSONObject, JSONValue

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

    async def review(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """RESPOND (non-streamed): ``None`` to send the answer as is, a copy the service modified, or a 403."""
        if not self.config.on_response:
            return None
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
        payload = self._payload(ctx, "response")
        payload["answer"] = answers
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
        content = decision.get("content")
        if not isinstance(content, str) or not isinstance(choices, list) or not choices:
            self._failed(ctx, "output", "webhook.bad_modify", started)
            return None
        first = choices[0]
        if not isinstance(first, dict) or not isinstance(message := first.get("message"), dict):
            return None
        ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "modify", "output", ("webhook.modify",), 1, digest))
        return {**completion, "choices": [{**first, "message": {**message, "content": content}}, *choices[1:]]}
