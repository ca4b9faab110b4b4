"""Anthropic's streamed Messages events → canonical ``chat.completion.chunk`` objects."""

from __future__ import annotations

import time

import orjson

from tollgate.errors import ProviderProtocolError, ProviderUnavailableError, UpstreamError
from tollgate.providers.anthropic.response import UsageCounter, finish_reason
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage, chunk
from tollgate.wire.sse import SSEDecoder, SSEEvent


class AnthropicStreamDecoder:
    """Reads ``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``, ``ping``, ``error``.

    Canonical tool call indexes count the ``tool_use`` blocks from 0, while Anthropic's block indexes
    also count text and thinking blocks, so a map from block index to tool index is kept.
    Unknown event and block types are skipped: Anthropic documents that new ones may appear.
    """

    __slots__ = (
        "_counter",
        "_created",
        "_id",
        "_model",
        "_sse",
        "_stopped",
        "_tools",
        "finish_reason",
        "provider",
        "usage",
    )

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self._sse = SSEDecoder()
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # Anthropic content block index → canonical tool call index
        self._counter = UsageCounter()
        self._stopped = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> list[JSONObject]:
        return self._decode(self._sse.feed(data))

    def close(self) -> list[JSONObject]:
        out = self._decode(self._sse.close())
        if not self._stopped:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' ended the stream before it finished.", provider=self.provider
            )
        return out

    def _chunk(self, delta: JSONObject | None = None, finish: str | None = None) -> JSONObject:
        return chunk(id=self._id, model=self._model, created=self._created, delta=delta, finish_reason=finish)

    def _decode(self, events: list[SSEEvent]) -> list[JSONObject]:
        out: list[JSONObject] = []
        for ev in events:
            data = self._load(ev)
            kind = data.get("type", ev.event)
            if kind == "error" or ev.event == "error":
                raise self._error(data)
            if self._stopped:
                continue  # nothing after message_stop belongs to the answer
            if kind == "message_start":
                out.append(self._start(data.get("message")))
            elif kind == "content_block_start":
                out.extend(self._block_start(data))
            elif kind == "content_block_delta":
                out.extend(self._block_delta(data))
            elif kind == "message_delta":
                out.extend(self._message_delta(data))
            elif kind == "message_stop":
                self._stopped = True
                self.usage = self._counter.usage()
                if self.usage is not None:
                    out.append(chunk(id=self._id, model=self._model, created=self._created, usage=self.usage))
        return out

    def _load(self, ev: SSEEvent) -> JSONObject:
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream event that is not JSON.", provider=self.provider
            ) from None
        if not isinstance(data, dict):
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream event that is not an object.",
                provider=self.provider,
            )
        return data

    def _error(self, data: JSONObject) -> UpstreamError:
        err = data.get("error")
        etype = err.get("type") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        detail = message if isinstance(message, str) else "no error details"
        if etype == "overloaded_error":
            # Anthropic's HTTP 529 arriving after the headers: another deployment may well succeed.
            return ProviderUnavailableError(
                f"Provider '{self.provider}' is overloaded: {detail}",
                provider=self.provider,
                upstream_status=529,
            )
        return UpstreamError(
            f"Provider '{self.provider}' sent an error mid-stream ({etype or 'unknown'}): {detail}",
            provider=self.provider,
        )

    def _start(self, message: JSONValue) -> JSONObject:
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = message["id"]  # type: ignore[assignment]
            if isinstance(message.get("model"), str) and message["model"]:
                self._model = message["model"]  # type: ignore[assignment]
            self._counter.update(message.get("usage"))
            self.usage = self._counter.usage()  # kept current so a cut stream still reports its prompt
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, data: JSONObject) -> list[JSONObject]:
        block = data.get("content_block")
        index = data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind != "tool_use":
            return []  # thinking and server tool blocks are not part of the canonical answer
        tool_index = len(self._tools)
        self._tools[index] = tool_index
        given = block.get("input")
        # The input arrives as input_json_delta events; a block that already carries it is sent whole.
        arguments = orjson.dumps(given).decode() if isinstance(given, dict) and given else ""
        call: JSONObject = {
            "index": tool_index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, data: JSONObject) -> list[JSONObject]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if isinstance(text, str) and text else []
        if kind == "input_json_delta":
            index = data.get("index")
            partial = delta.get("partial_json")
            tool_index = self._tools.get(index) if isinstance(index, int) else None
            if tool_index is None or not isinstance(partial, str) or not partial:
                return []
            call: JSONObject = {"index": tool_index, "function": {"arguments": partial}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking, signature and citation deltas

    def _message_delta(self, data: JSONObject) -> list[JSONObject]:
        self._counter.update(data.get("usage"))
        self.usage = self._counter.usage()
        delta = data.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop is None:
            return []
        self.finish_reason = finish_reason(stop)
        return [self._chunk({}, self.finish_reason)]
