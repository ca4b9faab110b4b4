"""Streamed answers in the access log (``server.log_bodies``): a stream filter that keeps what the provider wrote."""

from __future__ import annotations

from tollgate.context import RequestContext
from tollgate.types import JSONObject, JSONValue


class StreamBodyLog:
    """Passes chunks through unchanged and keeps each choice's text and tool-call arguments, as the provider
    wrote them (it runs before placeholders are restored), up to ``limit`` characters in all, in
    ``ctx.logged_response``. The record is current after every batch, so a stream the client cut short is
    logged as far as it went."""

    __slots__ = ("_ctx", "_finish", "_kept", "_limit", "_texts", "_tools")

    def __init__(self, ctx: RequestContext, limit: int) -> None:
        self._ctx = ctx
        self._limit = limit
        self._kept = 0
        self._texts: dict[int, list[str]] = {}
        self._tools: dict[tuple[int, int], list[str]] = {}  # (choice, tool call) -> argument pieces
        self._finish: dict[int, str] = {}

    def feed(self, chunks: list[JSONObject]) -> list[JSONObject]:
        changed = False
        for chunk in chunks:
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                continue
            for choice in choices:
                if isinstance(choice, dict):
                    changed = self._take(choice) or changed
        if changed:
            self._ctx.logged_response = self._record()
        return chunks

    def flush(self) -> list[JSONObject]:
        return []

    def _take(self, choice: JSONObject) -> bool:
        index = choice.get("index", 0)
        i = index if isinstance(index, int) else 0
        changed = False
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish[i] = finish
            changed = True
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return changed
        content = delta.get("content")
        if isinstance(content, str) and content:
            changed = self._keep(self._texts.setdefault(i, []), content) or changed
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                func = call.get("function") if isinstance(call, dict) else None
                args = func.get("arguments") if isinstance(func, dict) else None
                at = call.get("index", 0) if isinstance(call, dict) else 0
                if isinstance(args, str) and args:
                    key = (i, at if isinstance(at, int) else 0)
                    changed = self._keep(self._tools.setdefault(key, []), args) or changed
        return changed

    def _keep(self, parts: list[str], text: str) -> bool:
        room = self._limit - self._kept
        if room <= 0:
            return False
        piece = text[:room]
        parts.append(piece)
        self._kept += len(piece)
        return True

    def _record(self) -> JSONObject:
        choices: list[JSONValue] = []
        for i in sorted({*self._texts, *self._finish, *(c for c, _ in self._tools)}):
            entry: JSONObject = {"index": i, "content": "".join(self._texts.get(i, ()))}
            args: list[JSONValue] = ["".join(p) for (c, _), p in sorted(self._tools.items()) if c == i]
            if args:
                entry["tool_arguments"] = args
            if i in self._finish:
                entry["finish_reason"] = self._finish[i]
            choices.append(entry)
        record: JSONObject = {"object": "chat.completion.stream", "choices": choices}
        if self._kept >= self._limit:
            record["truncated"] = True
        return record
