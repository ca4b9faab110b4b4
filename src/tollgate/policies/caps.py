"""ADMIT (and INSPECT): token and size caps per request, from config and from the caller's metadata.

A prompt over its cap, or a request asking for more output than its cap, gets a 400 naming the cap before
anything is reserved or sent. With ``output_action: clamp`` the request's ``max_tokens`` is lowered to the cap
instead; a chat request that names no ``max_tokens`` gets the cap either way, so the cap always binds.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollgate.config.guardrails import CapsConfig
from tollgate.context import GuardrailDecision, RequestContext
from tollgate.errors import InvalidRequestError
from tollgate.routing.resolver import Route
from tollgate.types import JSONObject

GUARDRAIL = "caps"
# Endpoints whose body the gateway rewrites in INSPECT (so a max_tokens can be set); others are only checked.
_REWRITABLE = frozenset({"chat", "messages"})


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps that apply to one request, and where each came from (for the error message)."""

    max_prompt_tokens: int | None = None
    prompt_source: str = ""
    max_output_tokens: int | None = None
    output_source: str = ""


def _tighter(current: int | None, source: str, value: object, where: str) -> tuple[int | None, str]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0 and (current is None or value < current):
        return value, where
    return current, source


class CapsPolicy:
    """Built once per config version; per-request state (the output cap to write) lives until INSPECT."""

    def __init__(self, config: CapsConfig) -> None:
        self.config = config
        self.clamp = config.output_action == "clamp"
        self._pending: dict[int, int] = {}  # id(ctx) -> max_tokens to write into the body in INSPECT
        self.rejected = 0
        self.clamped = 0

    def caps_for(self, ctx: RequestContext) -> Caps:
        """The tightest cap of each kind: global, the requested model's, and the caller's metadata."""
        cfg = self.config
        prompt, p_src = _tighter(None, "", cfg.max_prompt_tokens, "guardrails.caps.max_prompt_tokens")
        output, o_src = _tighter(None, "", cfg.max_output_tokens, "guardrails.caps.max_output_tokens")
        model = cfg.models.get(ctx.requested_model or "")
        if model is not None:
            where = f"guardrails.caps.models.{ctx.requested_model}"
            prompt, p_src = _tighter(prompt, p_src, model.max_prompt_tokens, where + ".max_prompt_tokens")
            output, o_src = _tighter(output, o_src, model.max_output_tokens, where + ".max_output_tokens")
        principal = ctx.principal
        if cfg.metadata_caps and principal is not None and principal.metadata:
            meta = principal.metadata
            prompt, p_src = _tighter(prompt, p_src, meta.get("max_prompt_tokens"), "your key's max_prompt_tokens")
            output, o_src = _tighter(output, o_src, meta.get("max_output_tokens"), "your key's max_output_tokens")
        return Caps(prompt, p_src, output, o_src)

    async def admit(self, ctx: RequestContext, route: Route) -> None:
        caps = self.caps_for(ctx)
        cap = caps.max_prompt_tokens
        if cap is not None and ctx.estimated_prompt_tokens > cap:
            self.rejected += 1
            ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "block", "input", ("max_prompt_tokens",)))
            raise InvalidRequestError(
                f"The prompt is too large: about {ctx.estimated_prompt_tokens} tokens, over the cap of {cap} "
                f"({caps.prompt_source}). Shorten it, or ask your administrator to raise the cap.",
                param="messages",
                code="prompt_too_large",
            )
        cap = caps.max_output_tokens
        if cap is None:
            return
        asked = ctx.max_output_tokens
        rewritable = ctx.endpoint in _REWRITABLE
        if asked is not None and asked > cap:
            if not (self.clamp and rewritable):
                self.rejected += 1
                ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "block", "input", ("max_output_tokens",)))
                raise InvalidRequestError(
                    f"max_tokens is {asked}, over the cap of {cap} output tokens ({caps.output_source}). "
                    f"Ask for at most {cap}.",
                    param="max_tokens",
                    code="max_tokens_too_large",
                )
            self.clamped += 1
            ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, "clamp", "input", ("max_output_tokens",)))
        elif asked is not None or not rewritable:
            return
        # Limits and budgets reserve for what the provider may now generate at most.
        ctx.max_output_tokens = cap
        self._pending[id(ctx)] = cap

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        """INSPECT: the body with its output cap written in (a copy), or the same body."""
        cap = self._pending.pop(id(ctx), None)
        if cap is None:
            return req_body
        names = [n for n in ("max_tokens", "max_completion_tokens") if req_body.get(n) is not None] or ["max_tokens"]
        return {**req_body, **dict.fromkeys(names, cap)}

    def on_finalize(self, ctx: RequestContext) -> None:
        """Forget a request that ended before INSPECT. Never raises."""
        self._pending.pop(id(ctx), None)
