"""The pooled upstream HTTP transport (aiohttp), owned by the app lifespan; one per process.

Also routes ``demo://`` URLs to the in-process demo provider, so the demo goes through exactly the
same decode path as a real provider.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from tollgate.errors import ProviderProtocolError, ProviderTimeoutError, ProviderUnavailableError
from tollgate.providers.base import Deployment, Timeouts, UpstreamRequest


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_deployment", "_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, deployment: Deployment) -> None:
        self._resp = resp
        self._deployment = deployment
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(self._deployment, "while reading the response") from None
        except aiohttp.ClientError as exc:
            raise _protocol(self._deployment, exc) from None
        finally:
            self._resp.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(self._deployment, "mid-stream (no data within the read timeout)") from None
        except aiohttp.ClientError as exc:
            raise _protocol(self._deployment, exc) from None

    def close(self) -> None:
        # close(), not release(): an unfinished stream must not return its connection to the pool.
        self._resp.close()


@functools.lru_cache(maxsize=256)
def _client_timeout(t: Timeouts, stream: bool) -> aiohttp.ClientTimeout:
    """Built once per distinct setting: streams have no total deadline, only connect and per-read ones."""
    return aiohttp.ClientTimeout(total=None if stream else t.total, sock_connect=t.connect, sock_read=t.read)


def _timeout(deployment: Deployment, when: str) -> ProviderTimeoutError:
    return ProviderTimeoutError(f"Provider '{deployment.provider}' timed out {when}.", provider=deployment.provider)


def _protocol(deployment: Deployment, exc: Exception) -> ProviderProtocolError:
    return ProviderProtocolError(
        f"Provider '{deployment.provider}' broke the connection: {type(exc).__name__}.",
        provider=deployment.provider,
    )


LocalHandler = Callable[[UpstreamRequest], Awaitable[UpstreamResponse]]


@dataclass(slots=True)
class LocalResponse:
    """A response produced in-process (the demo provider), with the same interface as a network one."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    parts: tuple[bytes, ...] = ()
    delay: float = 0.0

    async def read(self) -> bytes:
        return self.body

    async def chunks(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield part

    def close(self) -> None:
        return None


class Transport:
    """Sends ``UpstreamRequest``s; maps connection failures and timeouts to the error tree."""

    def __init__(self, local: Mapping[str, LocalHandler] | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._local = dict(local or {})

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, req: UpstreamRequest, deployment: Deployment, *, stream: bool) -> UpstreamResponse:
        scheme = req.url.partition("://")[0]
        local = self._local.get(scheme)
        if local is not None:
            return await local(req)
        if self._session is None:
            await self.start()
        assert self._session is not None
        timeout = _client_timeout(deployment.timeouts, stream)
        try:
            resp = await self._session.request(
                req.method,
                req.url,
                headers=req.headers,
                data=req.body,
                timeout=timeout,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(deployment, "before answering") from None
        except aiohttp.ClientConnectorError:
            raise ProviderUnavailableError(
                f"Cannot connect to provider '{deployment.provider}'.", provider=deployment.provider
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderUnavailableError(
                f"Provider '{deployment.provider}' failed before answering: {type(exc).__name__}.",
                provider=deployment.provider,
            ) from None
        return _AiohttpResponse(resp, deployment)


async def demo_handler(req: UpstreamRequest) -> UpstreamResponse:
    """Serve ``demo://`` requests from the in-process demo engine, in the OpenAI wire format."""
    import orjson

    from tollgate.providers.demo.engine import handle

    body = orjson.loads(req.body) if req.body else {}
    path = req.url.partition("://")[2].partition("/")[2]
    reply = handle("/" + path, body if isinstance(body, dict) else {})
    return LocalResponse(reply.status, {"content-type": reply.content_type}, reply.body, tuple(reply.parts))
