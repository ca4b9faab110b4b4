"""Ollama ``/api/chat`` answers → canonical: the final JSON object, and the NDJSON stream.

A stream is one JSON object per line: ``{"message": {"content": piece}, "done": false}`` pieces, tool calls
arriving whole inside one such object, then ``{"done": true, "done_reason", "prompt_eval_count",
"eval_count", ...}``. An object ``{"error": "..."}`` can replace any of them.
"""

from __future__ import annotations

import hashlib
import time

import orjson

from tollgate.errors import ProviderProtocolError, UpstreamError
from tollgate.providers.base import load_json_object
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage, chat_completion, chunk, completion_id

# One NDJSON line is one chunk of a few tokens; a line this long means the upstream is not speaking NDJSON.
_MAX_LINE = 16 * 1024 * 1024

# done_reason → finish_reason; "load"/"unload" answer an empty request, which ends like a normal stop.
_FINISH = {"stop": "stop", "length": "length"}


def load_object(body: bytes, provider: str) -> JSONObject:
    data = load_json_object(body, provider)
    if "error" in data and "message" not in data:
        raise UpstreamError(f"Provider '{provider}' returned an error: {_error_text(data)}", provider=provider)
    return data


def _error_text(data: JSONObject) -> str:
    err = data.get("error")
    return (err if isinstance(err, str) else orjson.dumps(err).decode())[:300]


def usage_of(data: JSONObject) -> Usage | None:
    """Ollama leaves ``prompt_eval_count`` out when the whole prompt came from its cache, so absent is 0."""
    prompt = data.get("prompt_eval_count")
    completion = data.get("eval_count")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0,
        completion if isinstance(completion, int) and not isinstance(completion, bool) else 0,
    )


def finish_reason(data: JSONObject, had_tool_calls: bool) -> str:
    reason = _FINISH.get(str(data.get("done_reason") or "stop"), "stop")
    # Ollama says "stop" after a tool call; OpenAI clients look for "tool_calls" to run the tools.
    return "tool_calls" if had_tool_calls and reason == "stop" else reason


def canonical_tool_calls(raw: JSONValue, seed: str, start: int = 0, *, with_index: bool = False) -> list[JSONValue]:
    """Ollama tool calls (arguments as objects) → OpenAI ones (arguments as JSON strings, with ids).

    Ollama sends no call id (or, in newer versions, one clients need not rely on), so the id is derived
    from the answer: stable for the same answer, distinct between calls.
    """
    if not isinstance(raw, list):
        return []
    out: list[JSONValue] = []
    for offset, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        index = start + offset
        name = str(fn.get("name") or "")
        args = fn.get("arguments")
        arguments = args if isinstance(args, str) else orjson.dumps(args if args is not None else {}).decode()
        digest = hashlib.sha256(f"{seed}|{index}|{name}|{arguments}".encode()).hexdigest()[:12]
        converted: JSONObject = {
            "id": f"call_{index}_{digest}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        if with_index:
            converted = {"index": index, **converted}
        out.append(converted)
    return out


def parse_chat(data: JSONObject, fallback_model: str, provider: str) -> tuple[JSONObject, Usage | None]:
    message = data.get("message")
    if not isinstance(message, dict):
        raise ProviderProtocolError(f"Provider '{provider}' returned a response without 'message'.", provider=provider)
    seed = str(data.get("created_at") or "")
    calls = canonical_tool_calls(message.get("tool_calls"), seed)
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    out_message: JSONObject = {
        "role": "assistant",
        "content": text or (None if calls else ""),
        "refusal": None,
    }
    if calls:
        out_message["tool_calls"] = calls
    thinking = message.get("thinking")
    if isinstance(thinking, str) and thinking:
        out_message["reasoning_content"] = thinking
    usage = usage_of(data)
    model = data.get("model")
    choice: JSONObject = {
        "index": 0,
        "message": out_message,
        "logprobs": None,
        "finish_reason": finish_reason(data, bool(calls)),
    }
    return chat_completion(
        id=completion_id(),
        model=model if isinstance(model, str) and model else fallback_model,
        choices=[choice],
        usage=usage,
    ), usage


class OllamaStreamDecoder:
    """NDJSON lines (split anywhere across reads) → canonical chunks, ending with a usage-only chunk."""

    __slots__ = (
        "_buffer",
        "_created",
        "_done",
        "_id",
        "_model",
        "_started",
        "_tool_calls",
        "finish_reason",
        "provider",
        "usage",
    )

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self._model = model
        self._buffer = b""
        self._id = completion_id()
        self._created = int(time.time())
        self._started = False
        self._done = False
        self._tool_calls = 0
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> list[JSONObject]:
        self._buffer += data
        if b"\n" not in data:
            if len(self._buffer) > _MAX_LINE:
                raise ProviderProtocolError(
                    f"Provider '{self.provider}' sent a stream line longer than {_MAX_LINE} bytes.",
                    provider=self.provider,
                )
            return []
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        out: list[JSONObject] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[JSONObject]:
        out: list[JSONObject] = []
        rest, self._buffer = self._buffer, b""
        self._line(rest, out)  # a last line without its newline still counts
        if not self._done:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' ended the stream before it finished.", provider=self.provider
            )
        return out

    def _chunk(
        self, delta: JSONObject | None = None, finish: str | None = None, usage: Usage | None = None
    ) -> JSONObject:
        return chunk(
            id=self._id,
            model=self._model,
            created=self._created,
            delta=delta,
            finish_reason=finish,
            usage=usage,
        )

    def _line(self, line: bytes, out: list[JSONObject]) -> None:
        line = line.strip()
        if not line or self._done:
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream line that is not JSON.", provider=self.provider
            ) from None
        if not isinstance(obj, dict):
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream line that is not an object.",
                provider=self.provider,
            )
        if "error" in obj:
            raise UpstreamError(
                f"Provider '{self.provider}' sent an error mid-stream: {_error_text(obj)}",
                provider=self.provider,
            )
        if not self._started:
            self._started = True
            if isinstance(obj.get("model"), str) and obj["model"]:
                self._model = str(obj["model"])
            out.append(self._chunk({"role": "assistant", "content": ""}))
        message = obj.get("message")
        if isinstance(message, dict):
            self._message(message, str(obj.get("created_at") or ""), out)
        if obj.get("done") is True:
            self._done = True
            self.usage = usage_of(obj)
            self.finish_reason = finish_reason(obj, self._tool_calls > 0)
            out.append(self._chunk({}, self.finish_reason))
            if self.usage is not None:
                out.append(self._chunk(usage=self.usage))

    def _message(self, message: JSONObject, seed: str, out: list[JSONObject]) -> None:
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            out.append(self._chunk({"reasoning_content": thinking}))
        content = message.get("content")
        if isinstance(content, str) and content:
            out.append(self._chunk({"content": content}))
        calls = canonical_tool_calls(message.get("tool_calls"), seed, self._tool_calls, with_index=True)
        if calls:
            self._tool_calls += len(calls)
            out.append(self._chunk({"tool_calls": calls}))
