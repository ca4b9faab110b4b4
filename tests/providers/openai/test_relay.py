"""The OpenAI stream relay forwards the provider's bytes, reading only usage, finish reasons and errors."""

from __future__ import annotations

import orjson
import pytest

from tollgate.errors import ProviderProtocolError, UpstreamError
from tollgate.providers.openai.relay import OpenAIRelayDecoder


def _event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chunk(content: str | None = None, finish: str | None = None) -> dict:  # type: ignore[type-arg]
    delta = {} if content is None else {"content": content}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "usage": None,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "model": "m",
    "choices": [],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}
STREAM = (
    _event(_chunk("Hel")) + _event(_chunk("lo")) + _event(_chunk(None, "stop")) + _event(USAGE) + b"data: [DONE]\n\n"
)


def _relay(parts: list[bytes], hide_usage: bool = False) -> tuple[bytes, OpenAIRelayDecoder]:
    dec = OpenAIRelayDecoder("p", hide_usage)
    out = b"".join(dec.feed(p) for p in parts) + dec.close()
    return out, dec


def test_bytes_are_forwarded_unchanged_and_usage_is_read() -> None:
    out, dec = _relay([STREAM])
    assert out == STREAM
    assert dec.usage is not None and (dec.usage.prompt_tokens, dec.usage.completion_tokens) == (9, 3)
    assert dec.finish_reason == "stop"


def test_every_split_point_gives_the_same_bytes() -> None:
    for cut in range(1, len(STREAM)):
        assert _relay([STREAM[:cut], STREAM[cut:]])[0] == STREAM
    assert _relay([STREAM[i : i + 1] for i in range(len(STREAM))])[0] == STREAM


def test_usage_chunk_hidden_when_the_client_did_not_ask() -> None:
    out, dec = _relay([STREAM], hide_usage=True)
    assert out == STREAM.replace(_event(USAGE), b"")
    assert dec.usage is not None and dec.usage.total_tokens == 12


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_framing_is_normalised(newline: bytes) -> None:
    framed = STREAM.replace(b"\n", newline)
    for cut in range(1, len(framed), 7):
        out, dec = _relay([framed[:cut], framed[cut:]])
        assert out == STREAM and dec.usage is not None


def test_comments_and_spaced_json_from_other_servers() -> None:
    spaced = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}], "usage": null}\n\n'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    out, dec = _relay([b": ping\n\n" + spaced + usage])
    assert dec.finish_reason == "length" and dec.usage is not None and dec.usage.completion_tokens == 2
    assert out == spaced + usage + b"data: [DONE]\n\n"  # [DONE] added for a server that omits it


def test_cut_stream_garbage_and_errors() -> None:
    with pytest.raises(ProviderProtocolError, match="before it finished"):
        _relay([_event(_chunk("a")), b'data: {"id": "c1", "choi'])
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        _relay([b"data: <html>bad gateway</html>\n\n"])
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        _relay([b'data: {"choices": [{"finish_reason": "stop"}\n\n'])
    with pytest.raises(UpstreamError, match="error mid-stream"):
        _relay([_event(_chunk("a")) + _event({"error": {"message": "overloaded", "type": "server_error"}})])


def test_whole_slices_of_plain_events_pass_and_any_event_needing_reading_is_still_read() -> None:
    plain = b"".join(_event(_chunk(text)) for text in ("a", 'say "usage" and "error"', "data: {x}\n\ndata: {", "b"))
    dec = OpenAIRelayDecoder("p", False)
    assert dec.feed(plain) == plain  # answer text that looks like keys or framing is only text
    assert dec.usage is None and dec.finish_reason is None

    # One event that matters among plain ones, in a single read: read, not skipped.
    finish = _event(_chunk("a")) + _event(_chunk(None, "stop")) + _event(_chunk("b"))
    dec = OpenAIRelayDecoder("p", False)
    assert dec.feed(finish) == finish and dec.finish_reason == "stop"
    dec = OpenAIRelayDecoder("p", True)
    assert dec.feed(_event(_chunk("a")) + _event(USAGE) + _event(_chunk("b"))) == _event(_chunk("a")) + _event(
        _chunk("b")
    )
    assert dec.usage is not None and dec.usage.total_tokens == 12
    multiline = b'data: {"choices": [],\ndata: "usage": null}\n\n'
    out = OpenAIRelayDecoder("p", False).feed(_event(_chunk("a")) + multiline + _event(_chunk("b")))
    assert out == _event(_chunk("a")) + b'data: {"choices": [], "usage": null}\n\n' + _event(_chunk("b"))
    with pytest.raises(ProviderProtocolError, match="not JSON"):
        OpenAIRelayDecoder("p", False).feed(_event(_chunk("a")) + b"data: oops}\n\n" + _event(_chunk("b")))
    with pytest.raises(UpstreamError, match="error mid-stream"):
        OpenAIRelayDecoder("p", False).feed(_event(_chunk("a")) + _event({"error": {"message": "x"}}))


class _Counting(OpenAIRelayDecoder):
    """Counts the events read one by one (the slow path); the plain prefix is forwarded without them."""

    __slots__ = ("read",)

    def __init__(self) -> None:
        super().__init__("p", True)
        self.read = 0

    def _event(self, block: bytes) -> bytes | None:
        self.read += 1
        return super()._event(block)


def test_a_spaced_usage_chunk_does_not_make_the_plain_events_before_it_read_one_by_one() -> None:
    # Some servers pad the usage chunk ("prompt_tokens":      30). Only what is forwarded unread must be compact
    # JSON; the finish, usage and [DONE] events after the prefix are read however they are written.
    spaced_usage = (
        b'data: {"choices":[],"usage":{"prompt_tokens":      9,"completion_tokens":3,"total_tokens":  12}}\n\n'
    )
    plain = b"".join(_event(_chunk(w)) for w in ("one ", "two ", "three ", "four "))
    stream = plain + _event(_chunk(None, "stop")) + spaced_usage + b"data: [DONE]\n\n"
    dec = _Counting()
    out = dec.feed(stream) + dec.close()
    assert out == plain + _event(_chunk(None, "stop")) + b"data: [DONE]\n\n"  # the usage chunk hidden
    assert dec.usage is not None and dec.usage.prompt_tokens == 9 and dec.finish_reason == "stop"
    assert dec.read == 3  # finish, usage, [DONE]; none of the four plain events
    # Spacing inside the plain events themselves still sends everything down the event-by-event path.
    spaced = _event(_chunk("x")).replace(b'"model":"m"', b'"model": "m"')
    dec = _Counting()
    assert dec.feed(spaced + stream) == spaced + plain + _event(_chunk(None, "stop")) + b"data: [DONE]\n\n"
    assert dec.read == 8
