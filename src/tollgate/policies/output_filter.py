"""RESPOND: block lists on answers. A category's match blocks the answer, is masked, or is flagged.

Non-streamed answers are screened whole (``respond``); streams through a per-request filter on canonical
chunks (``stream_filter``), which holds back only the tail that could still become a match. A blocked stream
ends with a terminal error event in the client's format; what was sent before the match stays sent. An answer
the filter blocked or masked is never stored in the response cache (``no_store`` / ``blocks_caching``).
"""

from __future__ import annotations

import hashlib

from tollgate.config.guardrails import OutputFilterConfig
from tollgate.context import GuardrailDecision, RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.output_filter import Category, Hit, OutputMatcher, StreamScanner, merged
from tollgate.types import JSONObject, JSONValue

GUARDRAIL = "output_filter"
HEADER = b"x-tollgate-guardrail"
RULES_HEADER = b"x-tollgate-guardrail-rules"
_RANK = {"flag": 0, "mask": 1, "block": 2}


def blocked_error(category: Category) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"The answer was blocked (output_blocked) by the output filter (category: {category.name}). "
        "Rephrase the request, or ask your administrator to review the filter.",
        code="output_blocked",
        headers={HEADER.decode(): "blocked", RULES_HEADER.decode(): category.name},
    )


def mark_flagged(ctx: RequestContext, rules: str) -> None:
    """Add the flag headers of a non-streamed answer; a second guard that flags adds its rule ids."""
    headers = ctx.extra_headers
    for i, (name, value) in enumerate(headers):
        if name == RULES_HEADER:
            headers[i] = (RULES_HEADER, value + b"," + rules.encode())
            return
    headers.append((HEADER, b"flagged"))
    headers.append((RULES_HEADER, rules.encode()))


def _decide(ctx: RequestContext, hits: dict[str, Hit], digest: str) -> str | None:
    """Record the decision for what was found (the strongest action taken); returns that action."""
    found = [h for h in hits.values() if h.count]
    if not found:
        return None
    action = max((h.category.action for h in found), key=_RANK.__getitem__)
    rules = tuple(sorted(h.category.name for h in found))
    count = sum(h.count for h in found)
    ctx.guardrail_decisions.append(GuardrailDecision(GUARDRAIL, action, "output", rules, count, digest))
    return action


class OutputFilterPolicy:
    """Built once per config version: the compiled categories, shared by every request."""

    def __init__(self, config: OutputFilterConfig) -> None:
        self.config = config
        self.matcher = OutputMatcher(config.categories, config.max_pattern_chars)
        self.blocked = 0

    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """RESPOND (non-streamed): a masked copy, ``None`` when unchanged; a blocked answer raises 403."""
        choices = completion.get("choices")
        if self.matcher.regex is None or not isinstance(choices, list):
            return None
        hits: dict[str, Hit] = {}
        digest = hashlib.sha256()
        new_choices: list[JSONValue] = []
        changed = False
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(choice, dict) and isinstance(message, dict) and isinstance(content, str):
                digest.update(content.encode())
                text, _, blocked = self.matcher.apply(content, hits, self.config.placeholder)
                if blocked is not None:
                    self.blocked += 1
                    _decide(ctx, hits, digest.hexdigest())
                    raise blocked_error(blocked)
                if text != content:
                    choice = {**choice, "message": {**message, "content": text}}
                    changed = True
            new_choices.append(choice)
        _decide(ctx, hits, digest.hexdigest())
        flagged = sorted(n for n, h in hits.items() if h.count and h.category.action == "flag")
        if flagged:
            mark_flagged(ctx, ",".join(flagged))
        return {**completion, "choices": new_choices} if changed else None

    def stream_filter(self, ctx: RequestContext) -> OutputFilterStream | None:
        if self.matcher.regex is None:
            return None
        return OutputFilterStream(self, ctx)


class OutputFilterStream:
    """Screens the ``delta.content`` of canonical stream chunks, per choice.

    A chunk goes out with the tail that could still be the start of a match held back (its content shortened,
    possibly to ""); the held text goes out with the next chunk of that choice, with its finish chunk, or in a
    last chunk at ``flush``. Chunks are never dropped or reordered, so the stream stays valid for the client's
    encoder. A blocking match raises the 403 as a terminal error event."""

    def __init__(self, policy: OutputFilterPolicy, ctx: RequestContext) -> None:
        self._policy = policy
        self._ctx = ctx
        self._scanners: dict[int, StreamScanner] = {}
        self._template: JSONObject | None = None
        self._digest = hashlib.sha256()
        self.done = False  # set when the answer was blocked: the stream ends and nothing is cached
        self.no_store = False  # set when something was masked: the answer is not the model's, not cached
        self._recorded = False

    def _scanner(self, index: int) -> StreamScanner:
        scanner = self._scanners.get(index)
        if scanner is None:
            policy = self._policy
            scanner = self._scanners[index] = StreamScanner(policy.matcher, policy.config.placeholder)
        return scanner

    def _block(self, category: Category) -> PermissionDeniedError:
        self.done = self.no_store = True
        self._policy.blocked += 1
        self._record()
        return blocked_error(category)

    def _record(self) -> None:
        if not self._recorded:
            self._recorded = True
            hits = merged(s.hits for s in self._scanners.values())
            if _decide(self._ctx, hits, self._digest.hexdigest()) == "mask":
                self.no_store = True

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        return [self._filter(c) for c in chunks]

    def _filter(self, chunk: JSONObject) -> JSONObject:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return chunk
        new_choices: list[JSONValue] = []
        changed = False
        for choice in choices:
            new_choice = choice
            if isinstance(choice, dict):
                index = choice.get("index", 0)
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                finished = choice.get("finish_reason") is not None
                scanner = self._scanner(index if isinstance(index, int) else 0)
                if isinstance(content, str) or (finished and scanner.held):
                    piece = content if isinstance(content, str) else ""
                    self._digest.update(piece.encode())
                    text, blocked = scanner.feed(piece, final=finished)
                    if blocked is not None:
                        raise self._block(blocked)
                    if any(h.category.action == "mask" for h in scanner.hits.values()):
                        self.no_store = True
                    if text != content:
                        base = delta if isinstance(delta, dict) else {}
                        new_choice = {**choice, "delta": {**base, "content": text}}
                        changed = True
            new_choices.append(new_choice)
        self._template = chunk
        return {**chunk, "choices": new_choices} if changed else chunk

    def flush(self) -> list[JSONObject]:
        """A last chunk per choice that still holds text (the stream ended without a finish chunk)."""
        out: list[JSONObject] = []
        template = self._template
        for index, scanner in self._scanners.items():
            if not scanner.held:
                continue
            rest, blocked = scanner.feed("", final=True)
            if blocked is not None:
                raise self._block(blocked)
            if rest and template is not None:
                choice: JSONObject = {"index": index, "delta": {"content": rest}, "finish_reason": None}
                out.append({**{k: v for k, v in template.items() if k != "usage"}, "choices": [choice]})
        self._record()
        return out
