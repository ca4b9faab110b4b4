"""Anthropic ``message`` JSON → canonical ``chat.completion``, and the usage both directions share."""

from __future__ import annotations

import time
from collections.abc import Mapping

import orjson

from tollgate.errors import ProviderProtocolError
from tollgate.providers.base import load_json_object
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage, chat_completion

# stop_reason (Anthropic) → finish_reason (canonical). pause_turn means a server tool paused a long
# turn: the answer so far is complete from the client's point of view.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: JSONValue) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(raw: Mapping[str, JSONValue], name: str) -> int:
    value = raw.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class UsageCounter:
    """Anthropic token counts, updated from ``message_start`` and the cumulative ``message_delta``.

    Anthropic reports cached prompt tokens apart from ``input_tokens``; the canonical prompt count
    includes them (that is what OpenAI reports, and what the prompt really was).
    """

    __slots__ = ("cache_creation", "cache_read", "input", "output", "seen")

    def __init__(self) -> None:
        self.input = self.output = self.cache_read = self.cache_creation = 0
        self.seen = False

    def update(self, raw: JSONValue) -> None:
        """Take the counts present in ``raw``; absent ones keep their earlier value (deltas omit them)."""
        if not isinstance(raw, dict):
            return
        for name, attr in (
            ("input_tokens", "input"),
            ("output_tokens", "output"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_creation"),
        ):
            if isinstance(raw.get(name), int) and not isinstance(raw.get(name), bool):
                setattr(self, attr, _count(raw, name))
                self.seen = True

    def usage(self) -> Usage | None:
        if not self.seen:
            return None
        prompt = self.input + self.cache_read + self.cache_creation
        return Usage(prompt_tokens=prompt, completion_tokens=self.output, cached_tokens=self.cache_read)


def load_object(body: bytes, provider: str) -> JSONObject:
    return load_json_object(body, provider)


def to_chat_completion(data: JSONObject, provider: str) -> tuple[JSONObject, Usage | None]:
    """A Messages API ``message`` → canonical completion. Thinking blocks are not part of the answer."""
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        raise ProviderProtocolError(
            f"Provider '{provider}' returned a response that is not an Anthropic message.", provider=provider
        )
    texts: list[str] = []
    calls: list[JSONValue] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])  # type: ignore[arg-type]
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: JSONObject = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    counter = UsageCounter()
    counter.update(data.get("usage"))
    usage = counter.usage()
    choice: JSONObject = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(data.get("stop_reason")),
    }
    completion = chat_completion(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        choices=[choice],
        usage=usage,
        created=int(time.time()),
    )
    return completion, usage
