"""Gemini ``streamGenerateContent?alt=sse`` → canonical ``chat.completion.chunk`` objects.

Each SSE ``data:`` line is a whole ``GenerateContentResponse`` holding the next piece of each candidate;
there is no ``[DONE]``: a stream is complete when a candidate reported its ``finishReason``. Function calls
arrive whole, so each becomes one complete ``tool_calls`` delta. ``usageMetadata`` is repeated and grows;
the latest one wins and is emitted as the usage-only chunk when the stream closes cleanly.
"""

from __future__ import annotations

import time

import orjson

from tollgate.errors import ProviderProtocolError, UpstreamError
from tollgate.providers.base import classify_http_error
from tollgate.providers.gemini.response import (
    candidate_index,
    candidates_of,
    finish_reason,
    prompt_blocked,
    read_parts,
    usage_of,
)
from tollgate.types import JSONObject
from tollgate.wire.openai import Usage, chunk, completion_id
from tollgate.wire.sse import SSEDecoder, SSEEvent


class _Candidate:
    """Per-choice progress: whether the role was sent, how many tool calls so far, whether it finished."""

    __slots__ = ("calls", "finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.calls = 0
        self.finished = False


class GeminiStreamDecoder:
    """Feed bytes split anywhere; ``close()`` raises ``ProviderProtocolError`` for a stream cut short."""

    __slots__ = (
        "_candidates",
        "_created",
        "_id",
        "_model",
        "_response_id",
        "_sse",
        "finish_reason",
        "provider",
        "usage",
    )

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self._model = model
        self._sse = SSEDecoder()
        self._id: str | None = None
        self._response_id = ""
        self._created = int(time.time())
        self._candidates: dict[int, _Candidate] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> list[JSONObject]:
        return self._decode(self._sse.feed(data))

    def close(self) -> list[JSONObject]:
        out = self._decode(self._sse.close())
        if self.finish_reason is None:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' ended the stream before it finished.", provider=self.provider
            )
        if self.usage is not None:
            out.append(chunk(id=self._chunk_id(), model=self._model, created=self._created, usage=self.usage))
        return out

    def _chunk_id(self) -> str:
        if self._id is None:
            self._id = f"chatcmpl-{self._response_id}" if self._response_id else completion_id()
        return self._id

    def _decode(self, events: list[SSEEvent]) -> list[JSONObject]:
        out: list[JSONObject] = []
        for event in events:
            out.extend(self._event(self._load(event.data)))
        return out

    def _load(self, data: str) -> JSONObject:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream event that is not JSON.", provider=self.provider
            ) from None
        if not isinstance(value, dict):
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream event that is not an object.",
                provider=self.provider,
            )
        error = value.get("error")
        if isinstance(error, dict):
            # The same body Gemini sends as an HTTP error, arriving after the stream started.
            code = error.get("code")
            status = code if isinstance(code, int) and code >= 400 else 500
            raise self._mid_stream(classify_http_error(self.provider, status, {}, orjson.dumps(value)))
        return value

    def _mid_stream(self, err: UpstreamError) -> UpstreamError:
        err.message = f"Provider '{self.provider}' sent an error mid-stream: {err.message}"
        err.args = (err.message,)
        return err

    def _event(self, data: JSONObject) -> list[JSONObject]:
        if not self._response_id and isinstance(data.get("responseId"), str):
            self._response_id = str(data["responseId"])
        version = data.get("modelVersion")
        if isinstance(version, str) and version:
            self._model = version
        usage = usage_of(data.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidates = candidates_of(data, self.provider)
        out: list[JSONObject] = []
        if not candidates and prompt_blocked(data):
            state = self._state(0)
            if not state.finished:
                out.extend(self._finish(0, state, "content_filter", {"role": "assistant", "content": ""}))
            return out
        for candidate in candidates:
            index = candidate_index(candidate)
            state = self._state(index)
            parts = read_parts(candidate, self._response_id, state.calls, self.provider)
            delta: JSONObject = {}
            if not state.started:
                delta["role"] = "assistant"
            if parts.text:
                delta["content"] = parts.text
            if parts.calls:
                delta["tool_calls"] = list(parts.calls)
                state.calls += len(parts.calls)
            reason = candidate.get("finishReason")
            if isinstance(reason, str) and reason != "FINISH_REASON_UNSPECIFIED" and not state.finished:
                out.extend(self._finish(index, state, finish_reason(reason, state.calls > 0), delta))
            elif delta:
                state.started = True
                out.append(self._chunk(index, delta))
        return out

    def _finish(self, index: int, state: _Candidate, reason: str, delta: JSONObject) -> list[JSONObject]:
        out: list[JSONObject] = []
        if delta:
            out.append(self._chunk(index, delta))
        state.started = state.finished = True
        self.finish_reason = reason
        out.append(
            chunk(
                id=self._chunk_id(),
                model=self._model,
                created=self._created,
                delta={},
                finish_reason=reason,
                index=index,
            )
        )
        return out

    def _state(self, index: int) -> _Candidate:
        state = self._candidates.get(index)
        if state is None:
            state = self._candidates[index] = _Candidate()
        return state

    def _chunk(self, index: int, delta: JSONObject) -> JSONObject:
        return chunk(id=self._chunk_id(), model=self._model, created=self._created, delta=delta, index=index)
