"""DISPATCH: try the route's candidates in order until one answers; commit only once a first chunk arrived.

Retries and fallbacks happen only before anything reached the client: for a stream that is until the
upstream produced its first canonical chunk, so a provider that fails before streaming is replaced
transparently, and one that fails after is reported as a terminal error event by the front door.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tollgate.context import RequestContext
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport, UpstreamResponse
from tollgate.errors import ProviderProtocolError, TollgateError, UnsupportedParameterError, UpstreamError
from tollgate.providers.base import ProviderAdapter, RelayDecoder, UpstreamRequest, WireFormat
from tollgate.routing.resolver import Route
from tollgate.types import JSONObject
from tollgate.wire.openai import ChatRequest, Usage

Piece = TypeVar("Piece")
PieceOut = TypeVar("PieceOut", covariant=True)
S = TypeVar("S", bound="StartedStream[list[JSONObject]] | StartedStream[bytes]")


@dataclass(slots=True)
class Completed:
    """A non-streaming answer: canonical JSON, plus the provider's raw bytes when they are already OpenAI."""

    data: JSONObject
    raw_openai: bytes | None
    usage: Usage | None


class _Decoder(Protocol[PieceOut]):
    @property
    def usage(self) -> Usage | None: ...

    def feed(self, data: bytes) -> PieceOut: ...

    def close(self) -> PieceOut: ...


class StartedStream(Generic[Piece]):
    """A stream whose first piece has arrived; iterate for the rest. Always ``aclose()`` it."""

    def __init__(
        self, first: Piece, decoder: _Decoder[Piece], resp: UpstreamResponse, body: AsyncIterator[bytes]
    ) -> None:
        self.first = first
        self.decoder = decoder
        self._resp = resp
        self._body = body

    async def __aiter__(self) -> AsyncIterator[Piece]:
        if self.first:
            yield self.first
        async for data in self._body:
            piece = self.decoder.feed(data)
            if piece:
                yield piece
        tail = self.decoder.close()
        if tail:
            yield tail

    @property
    def usage(self) -> Usage | None:
        return self.decoder.usage

    async def aclose(self) -> None:
        self._resp.close()
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()


class ChunkStream(StartedStream[list[JSONObject]]):
    """Pieces are canonical chunks, for the client's encoder."""


class RelayStream(StartedStream[bytes]):
    """Pieces are the provider's own bytes, already in the client's format."""


class Dispatcher:
    def __init__(self, snapshot: Snapshot, transport: Transport) -> None:
        self.snapshot = snapshot
        self.transport = transport

    async def chat(
        self, ctx: RequestContext, req: ChatRequest, route: Route, *, relay: WireFormat | None = None
    ) -> Completed | ChunkStream | RelayStream:
        """Answer from the first deployment that can. With ``relay`` set to the client's format, a stream
        from a provider of that same format is forwarded as its own bytes (no stream filter may be active)."""
        last_error: TollgateError | None = None
        candidates = route.candidates
        for index, deployment in enumerate(candidates):
            more = index + 1 < len(candidates)
            adapter = self.snapshot.adapter(deployment)
            ctx.deployment = deployment
            ctx.attempts += 1
            ctx.fallback = index > 0
            try:
                upstream = adapter.chat_request(req)
            except UnsupportedParameterError as exc:
                # Another candidate may support the parameter; the last word is the last candidate's.
                last_error = exc
                ctx.attempts -= 1
                if more:
                    continue
                raise
            try:
                if req.stream:
                    if relay is not None and adapter.wire_format == relay and hasattr(adapter, "relay_stream_decoder"):
                        return await self._start_relay(adapter, upstream, req)
                    return await self._start_stream(adapter, upstream, req)
                return await self._complete(adapter, upstream, req)
            except UpstreamError as exc:
                last_error = exc
                if exc.retryable and more:
                    continue
                raise
        assert last_error is not None
        raise last_error

    async def _send(self, adapter: ProviderAdapter, upstream: UpstreamRequest, stream: bool) -> UpstreamResponse:
        resp = await self.transport.send(upstream, adapter.deployment, stream=stream)
        if resp.status >= 400:
            body = await resp.read()
            raise adapter.classify_error(resp.status, resp.headers, body)
        return resp

    async def _complete(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> Completed:
        resp = await self._send(adapter, upstream, stream=False)
        body = await resp.read()
        data, usage = adapter.parse_chat_response(body, req)
        return Completed(data, body if adapter.wire_format == "openai" else None, usage)

    async def _start_stream(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> ChunkStream:
        return await self._start(adapter, upstream, adapter.chat_stream_decoder(req), ChunkStream)

    async def _start_relay(self, adapter: ProviderAdapter, upstream: UpstreamRequest, req: ChatRequest) -> RelayStream:
        decoder: RelayDecoder = adapter.relay_stream_decoder(req)  # type: ignore[attr-defined]
        return await self._start(adapter, upstream, decoder, RelayStream)

    async def _start(
        self, adapter: ProviderAdapter, upstream: UpstreamRequest, decoder: _Decoder[Piece], kind: type[S]
    ) -> S:
        """Send, then wait for the first piece: until then a failure can still go to the next deployment."""
        resp = await self._send(adapter, upstream, stream=True)
        body = resp.chunks()
        try:
            async for data in body:
                first = decoder.feed(data)
                if first:
                    return kind(first, decoder, resp, body)  # type: ignore[arg-type]
            first = decoder.close()  # an upstream that answered 200 and then nothing is a failure: retry it
            if not first:
                raise ProviderProtocolError(
                    f"Provider '{adapter.deployment.provider}' sent an empty stream.",
                    provider=adapter.deployment.provider,
                )
            return kind(first, decoder, resp, body)  # type: ignore[arg-type]
        except BaseException:
            resp.close()
            raise

    async def embeddings(self, ctx: RequestContext, body: JSONObject, route: Route) -> tuple[JSONObject, Usage | None]:
        last_error: TollgateError | None = None
        for index, deployment in enumerate(route.candidates):
            adapter = self.snapshot.adapter(deployment)
            ctx.deployment, ctx.attempts, ctx.fallback = deployment, ctx.attempts + 1, index > 0
            try:
                resp = await self._send(adapter, adapter.embeddings_request(body), stream=False)
                return adapter.parse_embeddings_response(await resp.read(), body)
            except UpstreamError as exc:
                last_error = exc
                if exc.retryable and index + 1 < len(route.candidates):
                    continue
                raise
        assert last_error is not None
        raise last_error

    async def passthrough(
        self,
        ctx: RequestContext,
        path: str,
        body: JSONObject,
        raw: bytes | None,
        route: Route,
        *,
        stream: bool,
    ) -> UpstreamResponse:
        """Forward a body in the provider's own format (legacy completions, same-format requests)."""
        last_error: TollgateError | None = None
        for index, deployment in enumerate(route.candidates):
            adapter = self.snapshot.adapter(deployment)
            build = getattr(adapter, "passthrough_request", None)
            if build is None:
                last_error = UnsupportedParameterError(
                    f"Provider '{deployment.provider}' does not support the /{path} endpoint.", param="model"
                )
                continue
            ctx.deployment, ctx.attempts, ctx.fallback = deployment, ctx.attempts + 1, index > 0
            try:
                return await self._send(adapter, build(path, body, raw), stream=stream)
            except UpstreamError as exc:
                last_error = exc
                if exc.retryable and index + 1 < len(route.candidates):
                    continue
                raise
        assert last_error is not None
        raise last_error
