"""Relay an OpenAI-format stream to an OpenAI-format client as the provider's own bytes.

Decoding every event into a canonical chunk and encoding it again costs more CPU than everything
else a stream does, and changes nothing when no stream filter is active and the client speaks the
provider's format. The relay frames events, checks each is a JSON object (so garbage still becomes a
clean error), and parses only the few events the gateway must read: the usage chunk, finish reasons
and errors. Everything else is forwarded byte for byte.
"""

from __future__ import annotations

from tollgate.errors import ProviderProtocolError, UpstreamError
from tollgate.providers.base import STREAM_EVENT, load_json_object
from tollgate.wire.openai import Usage
from tollgate.wire.sse import DONE

_SAME = b"<same>"  # a sentinel, compared by identity: forward the upstream block unchanged

# What makes an event need reading, in compact JSON (OpenAI's): a finish reason that is a string, a usage
# that is an object, an error, the end. Everything _event extracts sits behind one of these; a null value
# or any other type yields nothing there, so an event without them needs no reading.
_NEEDS_READING = (b'"finish_reason":"', b'"usage":{', b'"error"', b"data: [DONE]")
_SPACED = b'": '  # a key followed by a space: JSON from another server, read event by event


def _plain_prefix(buf: bytes, end: int) -> int:
    """How much of ``buf[:end]`` (whole events) can be forwarded as it is, without reading its events.

    A few substring searches over the slice (C loops), instead of Python per event. Plain events come
    first and the ones to read last (finish, usage, [DONE]), so the prefix ends at the first event that
    may need reading. It must then be only single-line ``data: {...}`` events: with no newline inside an
    event, every separator a blank line, and every separator between a ``}`` and a ``data: {``, each
    event is one ``data: {...}`` line. A JSON string cannot hold an unescaped quote, so the markers in the
    bytes are keys, never text inside an answer (the per-event path reads the same way). Returns the
    length of the plain prefix including its last blank line (0: read everything event by event).
    """
    cut = end
    for marker in _NEEDS_READING:
        at = buf.find(marker, 0, cut)
        if at >= 0:
            cut = at
    split = end if cut == end else buf.rfind(b"\n\n", 0, cut)
    if split <= 0 or not buf.startswith(b"data: {") or buf[split - 1] != 0x7D:  # "}"
        return 0
    # Only the prefix must be compact JSON (its markers would be spaced otherwise); the events after it are
    # read one by one anyway, however they are written (a usage chunk padded with spaces, as some servers do).
    if buf.find(_SPACED, 0, split) >= 0:
        return 0
    if buf.count(b"\n", 0, split) != 2 * buf.count(b"}\n\ndata: {", 0, split):
        return 0
    return split + 2


class OpenAIRelayDecoder:
    """Feed upstream bytes; get the bytes to forward. ``hide_usage`` drops the usage-only chunk the
    gateway asked for on its own behalf."""

    __slots__ = ("_buf", "_done", "_hide_usage", "finish_reason", "provider", "usage")

    def __init__(self, provider: str, hide_usage: bool) -> None:
        self.provider = provider
        self._hide_usage = hide_usage
        self._buf = b""
        self._done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            # Rare: CRLF or CR framing. Normalise, holding back a final CR that may be half of a CRLF.
            hold = buf.endswith(b"\r")
            buf = (buf[:-1] if hold else buf).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return b""
        self._buf = buf[end + 2 :]
        start = _plain_prefix(buf, end)
        if start == end + 2:
            return buf[:start]  # the common case: forward the upstream slice itself
        out: list[bytes] = [buf[:start]] if start else []
        changed = False
        for block in buf[start:end].split(b"\n\n"):
            kept = self._event(block) if block else None
            if kept is _SAME:
                out.append(block + b"\n\n")
            else:
                changed = True
                if kept is not None:
                    out.append(kept)
        # Unchanged events are forwarded as the upstream slice itself, without re-joining them.
        return b"".join(out) if changed else buf[: end + 2]

    def close(self) -> bytes:
        tail = b""
        cut = ProviderProtocolError(
            f"Provider '{self.provider}' ended the stream before it finished.", provider=self.provider
        )
        if self._buf.strip():
            try:  # a last event without its blank line is accepted only if it is whole
                tail = self.feed(b"\n\n")
            except ProviderProtocolError:
                raise cut from None
        if not self._done:
            if self.finish_reason is None:
                raise cut
            tail += DONE  # a server that ends after the last chunk without [DONE]: the client still gets one
        return tail

    def _event(self, block: bytes) -> bytes | None:
        """``_SAME`` to forward the block as it is, other bytes to forward instead, ``None`` to drop it."""
        same = True
        if block.startswith(b"data: ") and b"\n" not in block:
            payload = block[6:]
        else:
            same = False
            lines = [ln for ln in block.split(b"\n") if ln and not ln.startswith(b":")]
            if not lines:
                return None  # a comment-only keep-alive
            # SSE joins data lines with a newline; between JSON tokens a space means the same and keeps the
            # forwarded event one data line (a bare second line would be dropped by the client's parser).
            payload = b" ".join(ln[5:].lstrip(b" ") for ln in lines if ln.startswith(b"data:"))
            block = b"data: " + payload
        if payload == b"[DONE]":
            self._done = True
            return _SAME if same else DONE
        if not payload.startswith(b"{") or not payload.rstrip().endswith(b"}"):
            raise ProviderProtocolError(
                f"Provider '{self.provider}' sent a stream event that is not JSON.", provider=self.provider
            )
        needs_usage = b'"usage"' in payload and b'"usage":null' not in payload and b'"usage": null' not in payload
        needs_finish = (
            b'"finish_reason"' in payload
            and b'"finish_reason":null' not in payload
            and b'"finish_reason": null' not in payload
        )
        if needs_usage or needs_finish or b'"error"' in payload:
            data = load_json_object(payload, self.provider, STREAM_EVENT)
            if isinstance(data.get("error"), dict) and "choices" not in data:
                raise UpstreamError(f"Provider '{self.provider}' sent an error mid-stream.", provider=self.provider)
            usage = Usage.from_openai(data.get("usage"))
            if usage is not None:
                self.usage = usage
            choices = data.get("choices")
            if isinstance(choices, list):
                for choice in choices:
                    if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                        self.finish_reason = str(choice["finish_reason"])
            if self._hide_usage and usage is not None and not choices:
                return None
        return _SAME if same else block + b"\n\n"
