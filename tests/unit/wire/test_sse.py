"""SSE framing: events survive any split of the byte stream and any line-ending style."""

from __future__ import annotations

import pytest

from tollgate.wire.sse import SSEDecoder

STREAM = b': keep-alive\n\nevent: message_start\ndata: {"a": 1}\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
EXPECTED = [("message_start", '{"a": 1}'), ("", "line1\nline2"), ("", "[DONE]")]


def _decode(parts: list[bytes]) -> list[tuple[str, str]]:
    dec = SSEDecoder()
    out = []
    for p in parts:
        out += [(e.event, e.data) for e in dec.feed(p)]
    out += [(e.event, e.data) for e in dec.close()]
    return out


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_and_line_ending(newline: bytes) -> None:
    data = STREAM.replace(b"\n", newline)
    assert _decode([data]) == EXPECTED
    assert _decode([data[i : i + 1] for i in range(len(data))]) == EXPECTED
    for cut in range(len(data)):
        assert _decode([data[:cut], data[cut:]]) == EXPECTED


def test_last_event_without_blank_line_is_flushed_on_close() -> None:
    assert _decode([b"data: tail"]) == [("", "tail")]


def test_field_without_space_after_colon() -> None:
    assert _decode([b"data:{}\n\n"]) == [("", "{}")]
