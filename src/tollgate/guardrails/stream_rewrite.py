"""Rewriting the texts of canonical stream chunks per choice: its content, and each tool call's arguments.

The output filter and the PII restorer both hold back a tail of streamed text and change what goes out; this is
their shared walk over the chunks. Chunks are never dropped or reordered, only their texts shortened or
lengthened, so the stream stays valid for every client encoder. Held text goes out with the next piece of the
same text, with the choice's finish chunk, or in a last chunk at ``flush``. Text held before a choice's tool
calls, and one call's arguments held when another call's start, go out first (as complete: the OpenAI and
Anthropic streams send a choice's content, then each call in turn), so the client sees everything in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tollgate.types import JSONObject, JSONValue


class TextRewrite(Protocol):
    """One streamed text (a choice's content, or one tool call's arguments)."""

    def pending(self) -> bool:
        """Whether text is held back."""
        ...

    def feed(self, piece: str, final: bool) -> str:
        """What may go out now; with ``final``, everything held. May raise to end the stream."""
        ...


class _Choice:
    __slots__ = ("calls", "content")

    def __init__(self) -> None:
        self.content: TextRewrite | None = None
        self.calls: dict[int, TextRewrite] = {}


def _release(index: int, text: str) -> JSONObject:
    return {"index": index, "function": {"arguments": text}}


class ChunkRewriter:
    """Rewrites ``delta.content`` (and, with ``arguments``, ``delta.tool_calls[].function.arguments``) per choice,
    with a fresh ``TextRewrite`` for each text."""

    __slots__ = ("_arguments", "_choices", "_content", "_template")

    def __init__(self, content: Callable[[], TextRewrite], arguments: Callable[[], TextRewrite] | None = None) -> None:
        self._content = content
        self._arguments = arguments
        self._choices: dict[int, _Choice] = {}
        self._template: JSONObject | None = None

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        return [self._chunk(c) for c in chunks]

    def _chunk(self, chunk: JSONObject) -> JSONObject:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return chunk
        self._template = chunk
        new_choices: list[JSONValue] = []
        changed = False
        for choice in choices:
            new = self._choice(choice) if isinstance(choice, dict) else choice
            changed = changed or new is not choice
            new_choices.append(new)
        return {**chunk, "choices": new_choices} if changed else chunk

    def _choice(self, choice: JSONObject) -> JSONObject:
        index = choice.get("index", 0)
        key = index if isinstance(index, int) else 0
        state = self._choices.get(key)
        if state is None:
            state = self._choices[key] = _Choice()
        delta = choice.get("delta")
        base: JSONObject = delta if isinstance(delta, dict) else {}
        finished = choice.get("finish_reason") is not None
        calls = base.get("tool_calls") if self._arguments is not None else None
        has_calls = isinstance(calls, list) and bool(calls)
        new_delta: JSONObject | None = None
        content = base.get("content")
        text = state.content
        if text is None:
            text = state.content = self._content()
        if isinstance(content, str) or ((finished or has_calls) and text.pending()):
            out = text.feed(content if isinstance(content, str) else "", finished or has_calls)
            if out != content:
                new_delta = {**base, "content": out}
        if has_calls or (finished and state.calls):
            new_calls = self._calls(state, calls if isinstance(calls, list) else [], finished)
            if new_calls is not None:
                new_delta = {**(new_delta or base), "tool_calls": new_calls}
        return choice if new_delta is None else {**choice, "delta": new_delta}

    def _calls(self, state: _Choice, calls: list[JSONValue], finished: bool) -> list[JSONValue] | None:
        """The rewritten tool-call deltas of one choice, or ``None`` when unchanged."""
        assert self._arguments is not None
        out: list[JSONValue] = []
        changed = False
        for call in calls:
            if not isinstance(call, dict):
                out.append(call)
                continue
            position = call.get("index", 0)
            key = position if isinstance(position, int) else 0
            for other, held in state.calls.items():
                if other != key and held.pending():
                    out.append(_release(other, held.feed("", True)))
                    changed = True
            fn = call.get("function")
            args = fn.get("arguments") if isinstance(fn, dict) else None
            stream = state.calls.get(key)
            if stream is None:
                stream = state.calls[key] = self._arguments()
            if isinstance(fn, dict) and isinstance(args, str):
                new = stream.feed(args, False)
                if new != args:
                    call = {**call, "function": {**fn, "arguments": new}}
                    changed = True
            out.append(call)
        if finished:
            for other, held in state.calls.items():
                if held.pending():
                    out.append(_release(other, held.feed("", True)))
                    changed = True
        return out if changed else None

    def flush(self) -> list[JSONObject]:
        """A last chunk per choice that still holds text back (the stream ended without a finish chunk)."""
        out: list[JSONObject] = []
        template = self._template
        if template is None:
            return out
        for index, state in self._choices.items():
            delta: JSONObject = {}
            if state.content is not None and state.content.pending():
                rest = state.content.feed("", True)
                if rest:
                    delta["content"] = rest
            calls: list[JSONValue] = [
                _release(k, held.feed("", True)) for k, held in state.calls.items() if held.pending()
            ]
            if calls:
                delta["tool_calls"] = calls
            if delta:
                choice: JSONObject = {"index": index, "delta": delta, "finish_reason": None}
                out.append({**{k: v for k, v in template.items() if k != "usage"}, "choices": [choice]})
        return out
