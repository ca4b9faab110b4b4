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

# Substrings that tell an event needs reading; JSON from OpenAI is compact, other servers add a space.
_NULL_USAGE = (b'"usage":null', b'"usage": null')
_NULL_FINISH = (b'"finish_reason":null', b'"finish_reason": null')


# Where an event that needs reading may begin; only a hint (the events before it are checked by _plain).
_MARKERS = (b'"finish_reason":"', b'"finish_reason": "', b'"usage":{', b'"usage": {', b'"error"', b"data: [DONE]")


def _first_marker(buf: bytes, end: int) -> int:
    """The first position in ``buf[:end]`` of any of ``_MARKERS``, or -1."""
    found = [at for at in (buf.find(m, 0, end) for m in _MARKERS) if at >= 0]
    return min(found) if found else -1


def _plain(buf: bytes, end: int) -> bool:
    """Whether ``buf[:end]`` is only single-line ``data: {...}`` events that need no reading (no usage, no
    finish reason, no error): then it is forwarded as it is without looking at its events one by one.

    Decided with a few substring counts over the whole slice (C loops) instead of Python per event: with no
    newline inside an event, every separator is exactly a blank line, and every separator sits between a
    ``}`` and a ``data: {``, each event is one ``data: {...}`` line. A JSON string cannot hold an unescaped
    quote, so ``"usage"`` in the bytes is a key, never text inside an answer (the per-event path reads the
    same way). Anything else (the ``[DONE]`` slice, comments, CRLF, spaced JSON) takes the per-event path.
    """
    separators = buf.count(b"\n\n", 0, end)
    return (
        buf.startswith(b"data: {")
        and buf[end - 1] == 0x7D  # "}"
        and buf.count(b"\n", 0, end) == 2 * separators
        and buf.count(b"}\n\ndata: {", 0, end) == separators
        and buf.count(b'"usage"', 0, end) == buf.count(b'"usage":null', 0, end)
        and buf.count(b'"finish_reason"', 0, end) == buf.count(b'"finish_reason":null', 0, end)
        and buf.find(b'"error"', 0, end) < 0
    )


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
        if _plain(buf, end):
            return buf[: end + 2]  # the common case: forward the upstream slice itself
        # The events that need reading come last (finish, usage, [DONE]): forward the plain events before
        # the first of them as one slice, and read the rest one by one.
        start = 0
        marker = _first_marker(buf, end)
        if marker > 0:
            split = buf.rfind(b"\n\n", 0, marker)
            if split > 0 and _plain(buf, split):
                start = split + 2
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
        needs_usage = b'"usage"' in payload and not any(n in payload for n in _NULL_USAGE)
        needs_finish = b'"finish_reason"' in payload and not any(n in payload for n in _NULL_FINISH)
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
