"""Raw ASGI plumbing: a small request object and response senders (no BaseHTTPMiddleware; back-pressure kept)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from tollgate.errors import PayloadTooLargeError
from tollgate.types import JSONValue

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# Unique across processes and replicas (48 random bits per process) without a syscall per request.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Request:
    __slots__ = ("_headers", "path", "receive", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.path: str = scope["path"]
        self._headers: dict[bytes, bytes] | None = None

    @property
    def headers(self) -> dict[bytes, bytes]:
        """Lower-cased header names (ASGI guarantees it); the last value wins for repeated headers."""
        if self._headers is None:
            self._headers = dict(self.scope["headers"])
        return self._headers

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    def request_id(self) -> str:
        """The client's ``x-request-id`` when it is sane, else a fresh one."""
        given = self.headers.get(b"x-request-id")
        if given and len(given) <= 128 and given.isascii() and b"\n" not in given and b"\r" not in given:
            return given.decode("ascii")
        return f"req_{_ID_PREFIX}{next(_ID_COUNTER):012x}"

    async def body(self, limit: int) -> bytes:
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLargeError(f"The request body is larger than the gateway's limit of {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError("client disconnected")
            part = message.get("body", b"")
            if part:
                size += len(part)
                if size > limit:
                    raise PayloadTooLargeError(f"The request body is larger than the gateway's limit of {limit} bytes.")
                chunks.append(part)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    # With a content-length the server writes the body as is instead of chunk-encoding it.
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: JSONValue, extra: Headers | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(payload), JSON_HEADERS + (extra or []))


async def start_stream(send: Send, extra: Headers) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + extra})


async def stream_part(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def end_stream(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client goes away (used to cancel upstream work for streams)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
