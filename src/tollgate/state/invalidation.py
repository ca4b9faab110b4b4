"""Key-cache invalidation fan-out: every replica drops a revoked, rotated or deleted key from its cache at once.

An admin change made on one replica (revoke, rotate, update a key; update or delete a user, team or org) is
published as an ``Invalidation`` on the bus; every replica's ``Authenticator`` drops the matching cache
entries when it arrives, so the next request re-reads the store.

* ``LocalInvalidationBus``: in-process delivery, for one gateway process (and tests of several
  authenticators in one process).
* ``RedisInvalidationBus``: Redis pub/sub on the channel ``tollgate:invalidate``; every replica sharing the
  Redis of ``rate_limits.counter_url`` subscribes to it. Delivery is at most once: a replica that is not
  subscribed when a message is published (Redis down, connection lost) never sees it. So each time the
  subscription is (re)established, subscribers are told to ``reset`` (drop their whole cache), and while it
  is down the cache's own time to live (5 s) bounds how long a stale entry can be used.

Publishing never blocks nor raises on the request path: messages go through a bounded queue drained by one
task; a message that cannot be sent is logged (at most once a minute) and counted in ``publish_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from tollgate.state.redis_bus import drain_and_cancel, fail_fast_client

log = logging.getLogger("tollgate.invalidation")

CHANNEL = "tollgate:invalidate"
InvalidationScope = Literal["hash", "key", "user", "team", "org"]
SCOPES: tuple[InvalidationScope, ...] = ("hash", "key", "user", "team", "org")

_QUEUE_SIZE = 10_000
_WARN_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Forget the cached keys matching ``scope``/``id``: one key by hash or id, or every key of a user, team, org."""

    scope: InvalidationScope
    id: str
    origin: str = ""  # the publishing bus, so a replica can skip what it already applied itself

    def encode(self) -> bytes:
        return orjson.dumps({"scope": self.scope, "id": self.id, "origin": self.origin})

    @staticmethod
    def decode(data: bytes | str) -> Invalidation | None:
        """The message, or None when it is not one of ours (malformed messages are ignored)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        scope, ident, origin = obj.get("scope"), obj.get("id"), obj.get("origin", "")
        if not isinstance(ident, str) or not isinstance(origin, str):
            return None
        for known in SCOPES:
            if scope == known:
                return Invalidation(known, ident, origin)
        return None


Handler = Callable[[Invalidation], None]
ResetHandler = Callable[[], None]


class InvalidationBus(Protocol):
    """Where invalidations are published and from where every subscriber receives them."""

    origin: str

    def publish(self, event: Invalidation) -> None:
        """Send ``event`` to every subscriber (other replicas included); never blocks, never raises."""
        ...

    def subscribe(self, on_event: Handler, on_reset: ResetHandler) -> None:
        """Call ``on_event`` per message, and ``on_reset`` whenever messages may have been missed."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Send what is queued (bounded wait), then close."""
        ...


class LocalInvalidationBus:
    """In-process delivery: every subscriber of this object receives every event, synchronously."""

    def __init__(self) -> None:
        self.origin = uuid.uuid4().hex
        self._subscribers: list[tuple[Handler, ResetHandler]] = []

    def publish(self, event: Invalidation) -> None:
        for on_event, _ in self._subscribers:
            on_event(event)

    def subscribe(self, on_event: Handler, on_reset: ResetHandler) -> None:
        self._subscribers.append((on_event, on_reset))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisInvalidationBus:
    """Redis pub/sub on ``CHANNEL``; reconnects on its own and resets subscribers on every (re)subscription."""

    def __init__(
        self,
        url: str,
        *,
        channel: str = CHANNEL,
        timeout_seconds: float = 0.5,
        retry_interval: float = 1.0,
        stop_timeout: float = 2.0,
    ) -> None:
        self.origin = uuid.uuid4().hex
        self.channel = channel
        self._url = url
        self._timeout = timeout_seconds
        self._retry_interval = retry_interval
        self._stop_timeout = stop_timeout
        self._subscribers: list[tuple[Handler, ResetHandler]] = []
        self._client: redis.Redis | None = None
        self._queue: asyncio.Queue[Invalidation] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_warning = 0.0
        # For metrics and tests: is the subscription live, and how often did publishing or listening fail.
        self.subscribed = asyncio.Event()
        self.published = 0
        self.publish_errors = 0
        self.received = 0
        self.resets = 0

    def publish(self, event: Invalidation) -> None:
        if self._queue is None:
            self._count_error("the invalidation bus is not started; message dropped")
            return
        try:
            self._queue.put_nowait(Invalidation(event.scope, event.id, self.origin))
        except asyncio.QueueFull:
            self._count_error("the invalidation queue is full; message dropped")

    def subscribe(self, on_event: Handler, on_reset: ResetHandler) -> None:
        self._subscribers.append((on_event, on_reset))

    async def start(self) -> None:
        self._client = fail_fast_client(self._url, self._timeout)
        self._queue = asyncio.Queue(_QUEUE_SIZE)
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="tollgate-invalidation-publisher"),
            asyncio.create_task(self._listen_loop(), name="tollgate-invalidation-listener"),
        ]

    async def stop(self) -> None:
        # Let queued messages go out (a revocation made just before shutdown must still reach the others).
        await drain_and_cancel(self._queue, self._tasks, self._stop_timeout)
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_loop(self) -> None:
        assert self._queue is not None and self._client is not None
        while True:
            event = await self._queue.get()
            try:
                await self._client.publish(self.channel, event.encode())
                self.published += 1
            except (RedisError, OSError) as exc:
                self._count_error(
                    f"cannot publish a key invalidation to Redis ({exc}); other replicas see it "
                    "when their cache entry expires (within 5 s)"
                )
            finally:
                self._queue.task_done()

    async def _listen_loop(self) -> None:
        assert self._client is not None
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Messages published while we were not subscribed are lost: start from an empty cache.
                self.resets += 1
                for _, on_reset in self._subscribers:
                    on_reset()
                self.subscribed.set()
                while True:
                    # A bounded wait, so a dead connection is noticed by the health check below.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        await pubsub.ping()
                        continue
                    if message.get("type") != "message":
                        continue
                    event = Invalidation.decode(message["data"])
                    if event is None or event.origin == self.origin:
                        continue
                    self.received += 1
                    for on_event, _ in self._subscribers:
                        on_event(event)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self._warn(
                    f"key invalidation channel on Redis unavailable ({exc}); keys are re-read from the "
                    f"store every 5 s until it is back; retrying in {self._retry_interval:g} s"
                )
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await asyncio.sleep(self._retry_interval)

    def _count_error(self, message: str) -> None:
        self.publish_errors += 1
        self._warn(message)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY or self._last_warning == 0.0:
            self._last_warning = now
            log.warning("%s", message)


def open_invalidation_bus(url: str | None, *, timeout_seconds: float = 0.5) -> InvalidationBus:
    """Redis pub/sub when ``url`` is ``redis://``/``rediss://`` (the counter store's Redis), else in-process."""
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisInvalidationBus(url, timeout_seconds=timeout_seconds)
    return LocalInvalidationBus()
