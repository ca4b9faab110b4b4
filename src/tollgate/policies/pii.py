"""INSPECT: PII and secrets in every text the provider would see are masked, redacted or hashed, or block the call."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from tollgate.config.guardrails import ENTITY_TYPES, Action, EntityType, PIIGuardConfig
from tollgate.context import GuardrailDecision, RequestContext, payload_hash
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.masking import MaskSession, PlaceholderRestorer
from tollgate.guardrails.pii import Match, PIIDetector, merge_names
from tollgate.guardrails.stream_rewrite import ChunkRewriter
from tollgate.types import JSONObject, JSONValue

if TYPE_CHECKING:  # the module imports spaCy lazily, but keep even its import out of gateways without NER
    from tollgate.guardrails.ner import SpacyNER

TextMap = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class PIISummary:
    """What one request contained, for audit and metrics: counts per entity type and the action taken; no values."""

    counts: tuple[tuple[EntityType, int], ...] = ()
    actions: tuple[tuple[EntityType, Action], ...] = ()

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def count(self, entity: EntityType) -> int:
        return dict(self.counts).get(entity, 0)


@dataclass(slots=True)
class PIIInspection:
    """The result of inspecting one request: the masked copy, its summary, and the request's mask session."""

    body: JSONObject
    summary: PIISummary
    session: MaskSession

    def restore(self, text: str) -> str:
        return self.session.restore(text)

    def restorer(self) -> PlaceholderRestorer:
        return self.session.restorer()


def _map_content(content: JSONValue, fn: TextMap) -> JSONValue:
    if isinstance(content, str):
        return fn(content)
    if not isinstance(content, list):
        return content
    new_parts: list[JSONValue] | None = None
    for i, part in enumerate(content):
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            text = part["text"]
            assert isinstance(text, str)
            new = fn(text)
            if new is not text:
                if new_parts is None:
                    new_parts = list(content)
                new_parts[i] = {**part, "text": new}
    return content if new_parts is None else new_parts


def _map_call(call: JSONValue, fn: TextMap) -> JSONValue:
    """A tool call (or legacy function_call) with its arguments string mapped."""
    if not isinstance(call, dict):
        return call
    func = call.get("function", call)
    if not isinstance(func, dict) or not isinstance(func.get("arguments"), str):
        return call
    args = func["arguments"]
    assert isinstance(args, str)
    new = fn(args)
    if new is args:
        return call
    if func is call:
        return {**call, "arguments": new}
    return {**call, "function": {**func, "arguments": new}}


def _map_message(msg: JSONValue, fn: TextMap) -> JSONValue:
    if not isinstance(msg, dict):
        return msg
    out: JSONObject | None = None
    if "content" in msg:
        content = _map_content(msg["content"], fn)
        if content is not msg["content"]:
            out = {**msg, "content": content}
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        new_calls = [_map_call(c, fn) for c in calls]
        if any(n is not o for n, o in zip(new_calls, calls, strict=True)):
            out = {**(out or msg), "tool_calls": new_calls}
    if "function_call" in msg:
        fc = _map_call(msg["function_call"], fn)
        if fc is not msg["function_call"]:
            out = {**(out or msg), "function_call": fc}
    return msg if out is None else out


def map_texts(body: JSONObject, fn: TextMap) -> JSONObject:
    """``body`` with ``fn`` applied to every text the provider would see, in order: message contents (strings and
    text parts, tool results included), tool-call arguments, and an embeddings ``input``. Copy on write: the
    caller's body is never changed, and an unchanged body is returned as is. ``fn`` returns its argument
    itself when it changes nothing."""
    out: JSONObject | None = None
    messages = body.get("messages")
    if isinstance(messages, list):
        new_msgs = [_map_message(m, fn) for m in messages]
        if any(n is not o for n, o in zip(new_msgs, messages, strict=True)):
            out = {**body, "messages": new_msgs}
    inp = body.get("input")
    if isinstance(inp, str | list):
        new_inp: JSONValue
        if isinstance(inp, str):
            new_inp = fn(inp)
        else:
            new_inp = [fn(x) if isinstance(x, str) else x for x in inp]
            if all(n is o for n, o in zip(new_inp, inp, strict=True)):
                new_inp = inp
        if new_inp is not inp:
            out = {**(out or body), "input": new_inp}
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        new_prompt = fn(prompt)
        if new_prompt is not prompt:
            out = {**(out or body), "prompt": new_prompt}
    return body if out is None else out


class PIIPolicy:
    """Detects PII and secrets in a request and applies each type's action before the provider sees it.

    Built once per config version. Per-request state (the reversible mapping and the summary) is kept until
    ``on_finalize`` for that request id and never shared between requests."""

    def __init__(self, config: PIIGuardConfig, ner: SpacyNER | None = None) -> None:
        """``ner``: a loaded model to use instead of loading the configured one (tests share one)."""
        self.config = config
        self.actions: dict[EntityType, Action] = {e: config.action_for(e) for e in ENTITY_TYPES}
        # A type that is allowed is not even looked for.
        active = [e for e, a in self.actions.items() if a != "allow"]
        self.detector = PIIDetector(active, config.phone_regions)
        self.ner: SpacyNER | None = None
        wanted = [e for e in config.ner.entities if e in active]
        if config.ner.enabled and wanted:
            if ner is None:
                # Imported only when on: spaCy (an optional extra) costs a gateway without NER nothing.
                from tollgate.guardrails.ner import SpacyNER as Backend

                ner = Backend(config.ner.model_copy(update={"entities": tuple(wanted)}))
            self.ner = ner
        self.blocking = frozenset(e for e, a in self.actions.items() if a == "block")
        salt = config.hash_salt
        self._salt = salt.encode() if salt is not None else secrets.token_bytes(16)
        self._inspections: dict[int, PIIInspection] = {}  # by id(ctx): request ids come from clients

    def new_session(self) -> MaskSession:
        return MaskSession(self.actions, salt=self._salt, reversible=self.config.reversible)

    def inspect_body(self, body: JSONObject, decisions: list[GuardrailDecision] | None = None) -> PIIInspection:
        """Masked copy and summary of ``body``; raises ``PermissionDeniedError`` if a blocked type occurs.

        With ``decisions``, what was done is appended to it (before the error, for a block): one ``block``
        decision naming the blocked types, or one decision per masked, redacted or hashed type with its count."""
        texts, found = self.scan(body)
        return self.act(body, texts, found, decisions)

    def scan(self, body: JSONObject) -> tuple[list[str], list[list[Match]]]:
        """Every text of ``body`` the provider would see (in ``map_texts`` order), and the patterns' matches in each."""
        found: list[list[Match]] = []
        texts: list[str] = []
        find = self.detector.find

        def collect(text: str) -> str:
            texts.append(text)
            found.append(find(text))
            return text

        map_texts(body, collect)
        return texts, found

    def act(
        self,
        body: JSONObject,
        texts: list[str],
        found: list[list[Match]],
        decisions: list[GuardrailDecision] | None = None,
    ) -> PIIInspection:
        """Apply the actions to the matches ``scan`` (and NER) found: see ``inspect_body``."""
        session = self.new_session()
        if not any(found):
            return PIIInspection(body, PIISummary(), session)
        blocked = sorted({m.entity for ms in found for m in ms if m.entity in self.blocking})
        if blocked:
            if decisions is not None:
                n = sum(1 for ms in found for m in ms if m.entity in self.blocking)
                decisions.append(GuardrailDecision("pii", "block", "input", tuple(blocked), n, payload_hash(texts)))
            raise PermissionDeniedError(
                "The request was blocked because it contains sensitive data of these types: "
                f"{', '.join(blocked)}. Remove it (or ask your administrator to mask it) and try again.",
                code="sensitive_data_blocked",
            )
        pending = iter(found)

        def rewrite(text: str) -> str:
            matches = next(pending)
            if not matches:
                return text
            new = session.apply(text, matches)
            return text if new == text else new

        masked = map_texts(body, rewrite)
        counts = tuple(sorted(session.counts.items()))
        summary = PIISummary(counts, tuple((e, self.actions[e]) for e, _ in counts))
        if decisions is not None and counts:
            digest = payload_hash(texts)
            decisions.extend(
                GuardrailDecision("pii", self.actions[e], "input", (e,), n, digest) for e, n in counts if n
            )
        return PIIInspection(masked, summary, session)

    async def inspect(self, ctx: RequestContext, req_body: JSONObject) -> JSONObject:
        """INSPECT phase: the body to send on (a masked copy, or the same object when nothing was found)."""
        if self.ner is None:
            inspection = self.inspect_body(req_body, ctx.guardrail_decisions)
        else:
            texts, found = self.scan(req_body)
            names = await self.ner.find_all(texts)
            found = [merge_names(f, n, t) for f, n, t in zip(found, names, texts, strict=True)]
            inspection = self.act(req_body, texts, found, ctx.guardrail_decisions)
        if inspection.summary.counts:
            self._inspections[id(ctx)] = inspection
        return inspection.body

    def summary(self, ctx: RequestContext) -> PIISummary:
        inspection = self._inspections.get(id(ctx))
        return inspection.summary if inspection is not None else PIISummary()

    def restore(self, ctx: RequestContext, text: str) -> str:
        """An answer's text with this request's placeholders replaced by the originals (reversible mode only)."""
        inspection = self._inspections.get(id(ctx))
        return inspection.restore(text) if inspection is not None else text

    def respond(self, ctx: RequestContext, completion: JSONObject) -> JSONObject | None:
        """RESPOND (non-streamed): a copy of the completion with this request's placeholders restored in every
        choice's text and tool-call arguments (reversible mode), or ``None`` when there is nothing to restore."""
        inspection = self._inspections.get(id(ctx))
        choices = completion.get("choices")
        if inspection is None or not inspection.session.originals or not isinstance(choices, list):
            return None
        restored: list[JSONValue] = []
        escaped = _Restore(_escaped(inspection.session.originals))

        def restore_args(text: str) -> str:
            return escaped.feed(text, True)

        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(choice, dict) and isinstance(message, dict):
                new = message
                if isinstance(content, str):
                    new = {**new, "content": inspection.restore(content)}
                calls = message.get("tool_calls")
                if isinstance(calls, list) and calls:
                    new = {**new, "tool_calls": [_map_call(c, restore_args) for c in calls]}
                choice = {**choice, "message": new}
            restored.append(choice)
        return {**completion, "choices": restored}

    def stream_restorer(self, ctx: RequestContext) -> PlaceholderRestorer | None:
        """A fresh restorer for this request's streamed answer, or ``None`` when there is nothing to restore."""
        inspection = self._inspections.get(id(ctx))
        if inspection is None or not inspection.session.originals:
            return None
        return inspection.restorer()

    def stream_filter(self, ctx: RequestContext) -> PIIRestoreStreamFilter | None:
        """RESPOND: a fresh filter restoring placeholders in this request's streamed answer (reversible mode)."""
        inspection = self._inspections.get(id(ctx))
        if inspection is None or not inspection.session.originals:
            return None
        return PIIRestoreStreamFilter(inspection.session.originals)

    def on_finalize(self, ctx: RequestContext) -> None:
        """Forget the request's mapping. Never raises."""
        self._inspections.pop(id(ctx), None)

    async def close(self) -> None:
        """Stop the NER worker threads (at shutdown)."""
        if self.ner is not None:
            await self.ner.close()


class _Restore:
    """One streamed text through a placeholder restorer, as ``ChunkRewriter`` wants it."""

    __slots__ = ("_restorer",)

    def __init__(self, originals: dict[str, str]) -> None:
        self._restorer = PlaceholderRestorer(originals)

    def pending(self) -> bool:
        return self._restorer.held > 0

    def feed(self, piece: str, final: bool) -> str:
        text = self._restorer.feed(piece) if piece else ""
        return text + self._restorer.flush() if final else text


class PIIRestoreStreamFilter:
    """Restores placeholders in canonical (OpenAI) stream chunks, per choice: in ``delta.content`` and in the
    tool calls' arguments (there as JSON string contents, so the arguments stay JSON).

    The tail that may be the start of a placeholder is held back until the next piece of the same text (see
    ``ChunkRewriter``); chunks are never dropped or reordered, only their texts shortened or lengthened."""

    def __init__(self, originals: dict[str, str]) -> None:
        escaped = _escaped(originals)
        self._rewriter = ChunkRewriter(lambda: _Restore(originals), lambda: _Restore(escaped))

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        return self._rewriter.feed(chunks)

    def flush(self) -> list[JSONObject]:
        """A last chunk per choice that still holds text back (the stream ended without a finish chunk)."""
        return self._rewriter.flush()


def _escaped(originals: dict[str, str]) -> dict[str, str]:
    """The originals as they go inside a JSON string (a tool call's arguments): quotes and controls escaped."""
    return {k: orjson.dumps(v).decode()[1:-1] for k, v in originals.items()}
