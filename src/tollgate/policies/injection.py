"""INSPECT: prompt injection in user messages (direct) and in tool results (indirect) is blocked or flagged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from tollgate.config.guardrails import CodeGuardConfig, InjectionGuardConfig, InjectionSourceConfig
from tollgate.context import GuardrailDecision, RequestContext, payload_hash
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.injection import CODE_RULES, DEFAULT_RULES, InjectionDetector, Rule, Verdict
from tollgate.types import JSONObject, JSONValue

Source = Literal["direct", "indirect"]

log = logging.getLogger("tollgate.guardrails")

HEADER = b"x-tollgate-guardrail"
RULES_HEADER = b"x-tollgate-guardrail-rules"
REASON = {"direct": "prompt_injection_detected", "indirect": "indirect_prompt_injection_detected"}
_WHERE = {"direct": "a user message", "indirect": "a tool result"}
# Roles whose content is screened, and as what. System and developer prompts are the operator's own;
# assistant turns are the model's.
_ROLES: dict[str, Source] = {"user": "direct", "tool": "indirect", "function": "indirect"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One text that scored at or above its source's threshold: where it was and why; never the text."""

    source: Source
    message: int  # index in ``messages`` (-1: a completions ``prompt``)
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class InjectionDecision:
    """What was decided for a request, for the record: the action and the findings."""

    action: Literal["block", "flag", "reroute"]
    findings: tuple[Finding, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(sorted({r for f in self.findings for r in f.verdict.rules}))

    @property
    def score(self) -> float:
        return max(f.verdict.score for f in self.findings)


def _texts(content: JSONValue) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(text := part.get("text"), str):
                yield text


def screened_texts(body: JSONObject) -> Iterator[tuple[Source, int, str]]:
    """Every text of a canonical request that is screened: (source, message index, text)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                continue
            role = msg.get("role")
            source = _ROLES.get(role) if isinstance(role, str) else None
            if source is not None:
                for text in _texts(msg.get("content")):
                    yield source, i, text
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        yield "direct", -1, prompt


def _mark_flagged(ctx: RequestContext, rules: str, what: bytes = b"flagged") -> None:
    """Add the flag headers, once per response: a second guard that flags the same request adds its rule ids
    (and a reroute outranks a flag)."""
    headers = ctx.extra_headers
    for i, (name, value) in enumerate(headers):
        if name == RULES_HEADER:
            headers[i] = (RULES_HEADER, value + b"," + rules.encode())
            if what != b"flagged":
                headers[:] = [(n, what if n == HEADER else v) for n, v in headers]
            return
    headers.append((HEADER, what))
    headers.append((RULES_HEADER, rules.encode()))


def _warn_unknown(key: str, disabled: tuple[str, ...], rules: tuple[Rule, ...]) -> None:
    """A disabled id that names no rule is most likely a typo: say so at start-up. It changes nothing (the
    rule the operator meant stays on, the safe side), so it is not worth refusing to start over."""
    unknown = sorted(set(disabled) - {r.id for r in rules})
    if unknown:
        log.warning("%s names unknown rules (ignored): %s", key, ", ".join(unknown))


class InjectionPolicy:
    """Scores the screened texts of a request and blocks or flags it. Built once per config version."""

    def __init__(self, config: InjectionGuardConfig) -> None:
        self.config = config
        _warn_unknown("guardrails.injection.disabled_rules", config.disabled_rules, DEFAULT_RULES)
        custom = [Rule(c.id, c.category, c.weight, c.pattern, c.triggers) for c in config.custom_rules]
        self.detector = InjectionDetector(
            (*DEFAULT_RULES, *custom), disabled=config.disabled_rules, decode=config.decode_payloads
        )
        self.sources: dict[Source, InjectionSourceConfig] = {}
        if config.direct.enabled:
            self.sources["direct"] = config.direct
        if config.indirect.enabled:
            self.sources["indirect"] = config.indirect
        self.blocked = 0
        self.flagged = 0
        self.rerouted = 0
        self._decisions: dict[int, InjectionDecision] = {}  # by id(ctx), until FINALIZE

    def screen(self, body: JSONObject) -> InjectionDecision | None:
        """The decision for ``body``, or ``None`` when nothing reached its threshold. Stops at the first text
        that is to be blocked."""
        findings: list[Finding] = []
        action: Literal["block", "flag", "reroute"] = "flag"
        for source, index, text in screened_texts(body):
            cfg = self.sources.get(source)
            if cfg is None:
                continue
            verdict = self.detector.score(text, stop_at=cfg.threshold)
            if verdict.score >= cfg.threshold and verdict.hits:
                findings.append(Finding(source, index, verdict))
                if cfg.action == "block":
                    action = "block"
                    break
                if cfg.action == "reroute":  # stronger than flag, weaker than a block of a later text
                    action = "reroute"
        if not findings:
            return None
        return InjectionDecision(action, tuple(findings))

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        """INSPECT phase: the body unchanged, or ``PermissionDeniedError`` (403) for a blocked request."""
        decision = self.screen(req_body)
        if decision is None:
            return req_body
        rules = ",".join(decision.rules)
        _decided(ctx, "injection", decision, (t for s, _, t in screened_texts(req_body) if s in self.sources))
        if decision.action == "block":
            self.blocked += 1
            finding = decision.findings[-1]
            _record(ctx, decision)
            raise PermissionDeniedError(
                f"The request was blocked ({REASON[finding.source]}): {_WHERE[finding.source]} looks like a "
                "prompt-injection attempt "
                f"(rules: {', '.join(finding.verdict.rules)}). If this is a mistake, rephrase the request or ask "
                "your administrator to review the guardrail.",
                code=REASON[finding.source],
                headers={HEADER.decode(): "blocked", RULES_HEADER.decode(): ",".join(finding.verdict.rules)},
            )
        if decision.action == "reroute":
            # The gateway re-resolves the route after INSPECT (Gateway.rerouted); the caller is told by a header.
            self.rerouted += 1
            ctx.reroute_model = self.config.reroute_model
            _mark_flagged(ctx, rules, b"rerouted")
        else:
            self.flagged += 1
            _mark_flagged(ctx, rules)
        self._decisions[id(ctx)] = decision
        return req_body

    def decision(self, ctx: RequestContext) -> InjectionDecision | None:
        return self._decisions.get(id(ctx))

    def on_finalize(self, ctx: RequestContext) -> None:
        """Record a flagged request with its outcome, and forget it. Never raises."""
        decision = self._decisions.pop(id(ctx), None)
        if decision is not None:
            _record(ctx, decision)


class CodeGuardPolicy:
    """Scores user messages for code, SQL and shell injection payloads and dangerous commands; flags (default) or
    blocks. Built once per config version."""

    def __init__(self, config: CodeGuardConfig) -> None:
        self.config = config
        _warn_unknown("guardrails.code.disabled_rules", config.disabled_rules, CODE_RULES)
        self.detector = InjectionDetector(CODE_RULES, disabled=config.disabled_rules)
        self.blocked = 0
        self.flagged = 0
        self._decisions: dict[int, InjectionDecision] = {}

    def screen(self, body: JSONObject) -> InjectionDecision | None:
        threshold = self.config.threshold
        findings: list[Finding] = []
        for source, index, text in screened_texts(body):
            if source != "direct":
                continue
            verdict = self.detector.score(text, stop_at=threshold)
            if verdict.score >= threshold and verdict.hits:
                findings.append(Finding(source, index, verdict))
                if self.config.action == "block":
                    break
        return InjectionDecision(self.config.action, tuple(findings)) if findings else None

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        decision = self.screen(req_body)
        if decision is None:
            return req_body
        rules = ",".join(decision.rules)
        _decided(ctx, "code", decision, (t for s, _, t in screened_texts(req_body) if s == "direct"))
        if decision.action == "block":
            self.blocked += 1
            _record(ctx, decision, "code")
            raise PermissionDeniedError(
                f"The request was blocked (dangerous_code_detected): a user message contains what looks like a "
                f"code, SQL or shell injection payload or a destructive command (rules: {', '.join(decision.rules)}).",
                code="dangerous_code_detected",
                headers={HEADER.decode(): "blocked", RULES_HEADER.decode(): rules},
            )
        self.flagged += 1
        _mark_flagged(ctx, rules)
        self._decisions[id(ctx)] = decision
        return req_body

    def on_finalize(self, ctx: RequestContext) -> None:
        decision = self._decisions.pop(id(ctx), None)
        if decision is not None:
            _record(ctx, decision, "code")


def _decided(ctx: RequestContext, guardrail: str, decision: InjectionDecision, texts: Iterator[str]) -> None:
    """Leave the decision in the request context (for metrics and the audit log), before a block raises."""
    ctx.guardrail_decisions.append(
        GuardrailDecision(
            guardrail, decision.action, "input", decision.rules, len(decision.findings), payload_hash(texts)
        )
    )


def _record(ctx: RequestContext, decision: InjectionDecision, guardrail: str = "injection") -> None:
    """One log line per decision: request id, caller, action, sources, score and rule ids; never the text."""
    if not log.isEnabledFor(logging.WARNING):
        return
    principal = ctx.principal
    log.warning(
        "guardrail=%s action=%s request_id=%s key=%s team=%s sources=%s score=%.2f rules=%s status=%s",
        guardrail,
        decision.action,
        ctx.request_id,
        principal.key_id if principal else "-",
        principal.team_id if principal and principal.team_id else "-",
        ",".join(sorted({f.source for f in decision.findings})),
        decision.score,
        ",".join(decision.rules),
        403 if decision.action == "block" else ctx.status,
    )
