"""Incremental Server-Sent Events decoding and encoding (the framing every provider streams in)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from tollgate.types import JSONValue


@dataclass(slots=True)
class SSEEvent:
    """One decoded event: the ``event:`` name (empty when absent) and the joined ``data:`` lines."""

    event: str
    data: str


class SSEDecoder:
    """Feed raw bytes in any split; get whole events out. Tolerates LF, CRLF and CR line endings."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A trailing CR may be the first half of a CRLF split across reads: keep it back.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        self._buf = buf[start:]
        return events

    def close(self) -> list[SSEEvent]:
        """Flush a final event that was not followed by a blank line (a lenient but common upstream habit)."""
        rest, self._buf = self._buf.replace(b"\r", b"\n"), b""
        if not rest.strip():
            return []
        event = _parse_block(rest.rstrip(b"\n"))
        return [event] if event is not None else []

    @property
    def pending(self) -> bool:
        return bool(self._buf.strip())


def _parse_block(block: bytes) -> SSEEvent | None:
    name = ""
    data: list[str] = []
    for raw in block.split(b"\n"):
        if not raw or raw[:1] == b":":
            continue  # comments are keep-alives
        field, sep, value = raw.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and not name:
        return None
    return SSEEvent(name, "\n".join(data))


def encode_data(payload: JSONValue) -> bytes:
    """``data: {json}\\n\\n`` — the framing of OpenAI streams."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(name: str, payload: JSONValue) -> bytes:
    """``event: name\\ndata: {json}\\n\\n`` — the framing of Anthropic streams."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"
