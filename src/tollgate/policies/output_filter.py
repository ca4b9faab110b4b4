"""RESPOND: block lists on answers. A category's match blocks the answer, is masked, or is flagged.

Non-streamed answers are screened whole (``respond``); streams through a per-request filter on canonical
chunks (``stream_filter``), which holds back only the tail that could still become a match. A blocked stream
ends with a terminal error event in the client's format; what was sent before the match stays sent. An answer
the filter blocked or masked is never stored in the response cache (``no_store`` / ``blocks_caching``).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NoReturn

from tollgate.config.guardrails import OutputFilterConfig
from tollgate.context import GuardrailDecision, RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.output_filter import Category, Hit, OutputMatcher, StreamScanner, merged
from tollgate.guardrails.stream_rewrite import ChunkRewriter
from tollgate.guardrails.tool_args import ArgsScanner
from tollgate.types import JSONObject, JSONValue

if TYPE_CHECKING:
    from hashlib import _Hash

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


def _decide(ctx: RequestContext, hits: dict[str, Hit], digest: str, action: str | None = None) -> str | None:
    """Record the decision for what was found (the strongest action taken, or ``action`` when the answer was
    blocked: a mask match that cannot be masked in a tool call's JSON blocks it too); returns that action."""
    found = [h for h in hits.values() if h.count]
    if not found:
        return None
    if action is None:
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
            if isinstance(choice, dict) and isinstance(message, dict):
                new_message = self._screen_message(ctx, message, hits, digest)
                if new_message is not message:
                    choice = {**choice, "message": new_message}
                    changed = True
            new_choices.append(choice)
        _decide(ctx, hits, digest.hexdigest())
        flagged = sorted(n for n, h in hits.items() if h.count and h.category.action == "flag")
        if flagged:
            mark_flagged(ctx, ",".join(flagged))
        return {**completion, "choices": new_choices} if changed else None

    def _screen_message(
        self, ctx: RequestContext, message: JSONObject, hits: dict[str, Hit], digest: _Hash
    ) -> JSONObject:
        """One choice's message with its content and its tool calls' arguments screened (a copy when changed)."""
        content = message.get("content")
        out = message
        if isinstance(content, str):
            digest.update(content.encode())
            text, _, blocked = self.matcher.apply(content, hits, self.config.placeholder)
            if blocked is not None:
                self._refuse(ctx, hits, digest, blocked)
            if text != content:
                out = {**message, "content": text}
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            new_calls: list[JSONValue] = []
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                args = fn.get("arguments") if isinstance(fn, dict) else None
                if isinstance(call, dict) and isinstance(fn, dict) and isinstance(args, str):
                    digest.update(args.encode())
                    scanner = ArgsScanner(self.matcher, self.config.placeholder, hits)
                    new, blocked = scanner.feed(args, final=True)
                    if blocked is not None:
                        self._refuse(ctx, hits, digest, blocked)
                    if new != args:
                        call = {**call, "function": {**fn, "arguments": new}}
                new_calls.append(call)
            if any(n is not o for n, o in zip(new_calls, calls, strict=True)):
                out = {**out, "tool_calls": new_calls}
        return out

    def _refuse(self, ctx: RequestContext, hits: dict[str, Hit], digest: _Hash, category: Category) -> NoReturn:
        self.blocked += 1
        _decide(ctx, hits, digest.hexdigest(), "block")
        raise blocked_error(category)

    def stream_filter(self, ctx: RequestContext) -> OutputFilterStream | None:
        if self.matcher.regex is None:
            return None
        return OutputFilterStream(self, ctx)


class _Screen:
    """One streamed text of an answer (a choice's content or a tool call's arguments) through its scanner."""

    __slots__ = ("_scanner", "_stream")

    def __init__(self, stream: OutputFilterStream, scanner: StreamScanner | ArgsScanner) -> None:
        self._stream = stream
        self._scanner = scanner

    def pending(self) -> bool:
        return bool(self._scanner.held)

    def feed(self, piece: str, final: bool) -> str:
        stream = self._stream
        stream.digest.update(piece.encode())
        text, blocked = self._scanner.feed(piece, final)
        if blocked is not None:
            raise stream.block(blocked)
        if self._scanner.hits and any(h.category.action == "mask" for h in self._scanner.hits.values()):
            stream.no_store = True
        return text


class OutputFilterStream:
    """Screens the ``delta.content`` of canonical stream chunks and their tool calls' arguments, per choice.

    A chunk goes out with the tail that could still be the start of a match held back (its text shortened,
    possibly to ""); the held text goes out with the next piece of the same text, with the choice's finish
    chunk, or in a last chunk at ``flush`` (``ChunkRewriter``). A blocking match raises the 403 as a terminal
    error event."""

    def __init__(self, policy: OutputFilterPolicy, ctx: RequestContext) -> None:
        self._policy = policy
        self._ctx = ctx
        self._scanners: list[StreamScanner | ArgsScanner] = []
        self.digest = hashlib.sha256()
        self.done = False  # set when the answer was blocked: the stream ends and nothing is cached
        self.no_store = False  # set when something was masked: the answer is not the model's, not cached
        self._recorded = False
        self._rewriter = ChunkRewriter(self._text, self._arguments)

    def _text(self) -> _Screen:
        policy = self._policy
        scanner = StreamScanner(policy.matcher, policy.config.placeholder)
        self._scanners.append(scanner)
        return _Screen(self, scanner)

    def _arguments(self) -> _Screen:
        policy = self._policy
        scanner = ArgsScanner(policy.matcher, policy.config.placeholder)
        self._scanners.append(scanner)
        return _Screen(self, scanner)

    def block(self, category: Category) -> PermissionDeniedError:
        self.done = self.no_store = True
        self._policy.blocked += 1
        self._record("block")
        return blocked_error(category)

    def _record(self, action: str | None = None) -> None:
        if not self._recorded:
            self._recorded = True
            hits = merged(s.hits for s in self._scanners)
            decided = _decide(self._ctx, hits, self.digest.hexdigest(), action)
            if decided == "mask":
                self.no_store = True
            flagged = sorted(n for n, h in hits.items() if h.count and h.category.action == "flag")
            if flagged and decided != "block":
                # Only a stream held back whole (a buffering response webhook) still sends these headers.
                mark_flagged(self._ctx, ",".join(flagged))

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        return self._rewriter.feed(chunks)

    def flush(self) -> list[JSONObject]:
        """A last chunk per choice that still holds text (the stream ended without a finish chunk)."""
        out = self._rewriter.flush()
        self._record()
        return out
