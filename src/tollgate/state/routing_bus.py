"""Routing state shared between replicas over Redis: the I/O side of routing/shared.py.

Three things on the Redis of ``rate_limits.counter_url`` (names under ``routing.shared_state.key_prefix``):

* the channel ``<prefix>breakers``: every breaker transition (open, closed) a replica makes, published;
* the hash ``<prefix>open``: the breakers currently open, deployment key -> the last ``open`` message; a
  ``closed`` removes the field. Read at every (re)subscription, so a replica that starts or reconnects
  gets the fleet's open breakers (pub/sub is at most once: what was published while it was away is lost);
* the hash ``<prefix>latency``: one field per replica with its latency report, rewritten every
  ``interval``; each exchange (``TIME``, ``HSET``, ``HGETALL`` in one pipeline) also reads the others'.
  Reports older than ``stale_seconds`` are ignored and deleted (a replica that died leaves no trace).

The clock offset (Redis ``TIME`` minus the routing state's monotonic clock) is measured at each exchange
and subscription, at the midpoint of the round trip: transition times travel on Redis's clock.

Nothing here blocks or raises on the request path: transitions go through a bounded queue drained by one
task. Redis unreachable means routing on local state only, a warning at most once a minute and the error
counters below (exported as ``tollgate_routing_sync_errors``); everything resumes when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

from tollgate.state.redis_bus import drain_and_cancel, fail_fast_client

log = logging.getLogger("tollgate.routing.shared")

_QUEUE_SIZE = 10_000
_WARN_EVERY = 60.0
_OPEN_TTL = 86_400


class RoutingPeer(Protocol):
    """What the bus feeds (routing/shared.py ``SharedRouting``)."""

    def on_news(self, data: bytes | str) -> None: ...

    def on_snapshot(self, entries: list[bytes | str]) -> None: ...

    def report(self, shared_now: float) -> bytes: ...

    def absorb(self, reports: Mapping[str, bytes], shared_now: float) -> list[str]: ...

    def disconnected(self) -> None: ...


class RedisRoutingBus:
    """Publishes this replica's breaker transitions, applies the others', and exchanges latency reports."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "tollgate:routing:",
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = 0.5,
        retry_interval: float = 1.0,
        stop_timeout: float = 2.0,
    ) -> None:
        self.origin = uuid.uuid4().hex
        self.channel = key_prefix + "breakers"
        self.open_key = key_prefix + "open"
        self.latency_key = key_prefix + "latency"
        self.interval = interval
        self._url = url
        self._clock = clock
        self._timeout = timeout_seconds
        self._retry_interval = retry_interval
        self._stop_timeout = stop_timeout
        # Until Redis answers, wall time stands in for Redis's (they agree on hosts kept in sync by NTP).
        self._offset = time.time() - clock()
        self._peer: RoutingPeer | None = None
        self._client: redis.Redis | None = None
        self._queue: asyncio.Queue[tuple[str, bytes, bool]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_warning = 0.0
        # For metrics and tests.
        self.subscribed = asyncio.Event()
        self.exchanges = 0  # latency exchanges that succeeded
        self.published = 0
        self.publish_errors = 0
        self.sync_errors = 0  # failed exchanges and lost subscriptions

    @property
    def offset(self) -> float:
        return self._offset

    @property
    def errors(self) -> int:
        return self.publish_errors + self.sync_errors

    def attach(self, peer: RoutingPeer) -> None:
        self._peer = peer

    def publish(self, key: str, message: bytes, is_open: bool) -> None:
        if self._queue is None:
            return  # not started (a gateway built but not served): local state only
        try:
            self._queue.put_nowait((key, message, is_open))
        except asyncio.QueueFull:
            self.publish_errors += 1
            self._warn("the shared routing queue is full; a breaker transition was not shared")

    async def start(self) -> None:
        self._client = fail_fast_client(self._url, self._timeout)
        self._queue = asyncio.Queue(_QUEUE_SIZE)
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="tollgate-routing-publisher"),
            asyncio.create_task(self._listen_loop(), name="tollgate-routing-listener"),
            asyncio.create_task(self._exchange_loop(), name="tollgate-routing-latency"),
        ]

    async def stop(self) -> None:
        await drain_and_cancel(self._queue, self._tasks, self._stop_timeout)
        self._tasks = []
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._client.hdel(self.latency_key, self.origin)  # leave no report behind
            await self._client.aclose()
            self._client = None
        self._queue = None

    async def _measure_offset(self) -> None:
        assert self._client is not None
        before = self._clock()
        seconds, micros = await self._client.time()
        after = self._clock()
        self._offset = seconds + micros / 1e6 - (before + after) / 2

    async def _send_loop(self) -> None:
        assert self._queue is not None and self._client is not None
        while True:
            key, message, is_open = await self._queue.get()
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.publish(self.channel, message)
                    if is_open:
                        pipe.hset(self.open_key, key, message)
                        pipe.expire(self.open_key, _OPEN_TTL)  # a hash nobody touches for a day goes
                    else:
                        pipe.hdel(self.open_key, key)
                    await pipe.execute()
                self.published += 1
            except (RedisError, OSError) as exc:
                self.publish_errors += 1
                self._warn(
                    f"cannot share a breaker transition of {key} over Redis ({exc}); other replicas decide alone"
                )
            finally:
                self._queue.task_done()

    async def _listen_loop(self) -> None:
        assert self._client is not None
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                # Subscribed first, then the snapshot: a transition made in between arrives either way.
                await self._measure_offset()
                entries = await self._client.hvals(self.open_key)
                if self._peer is not None:
                    self._peer.on_snapshot(list(entries))
                self.subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        await pubsub.ping()
                        continue
                    if message.get("type") == "message" and self._peer is not None:
                        self._peer.on_news(message["data"])
            except (RedisError, OSError) as exc:
                if self.subscribed.is_set():
                    self.sync_errors += 1
                self.subscribed.clear()
                self._warn(
                    f"shared routing state on Redis unavailable ({exc}); routing on this replica's own breakers "
                    f"and latency until it is back; retrying in {self._retry_interval:g} s"
                )
            except Exception:  # a bug must not end the subscription for good: resubscribe
                self.sync_errors += 1
                self.subscribed.clear()
                log.exception("shared routing listener failed")
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await asyncio.sleep(self._retry_interval)

    async def _exchange_loop(self) -> None:
        while True:
            try:
                await self.exchange()
            except (RedisError, OSError) as exc:
                self.sync_errors += 1
                if self._peer is not None:
                    self._peer.disconnected()
                self._warn(f"cannot exchange latency averages over Redis ({exc}); using this replica's own")
            except Exception:  # a bug must not end the exchanges for good
                self.sync_errors += 1
                log.exception("latency exchange failed")
            await asyncio.sleep(self.interval)

    async def exchange(self) -> None:
        """One latency exchange: write this replica's report, read everyone's, drop the stale ones."""
        assert self._client is not None
        peer = self._peer
        if peer is None:
            return
        shared_now = self._clock() + self._offset
        before = self._clock()
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hset(self.latency_key, self.origin, peer.report(shared_now))
            pipe.hgetall(self.latency_key)
            (seconds, micros), _, reports = await pipe.execute()
        after = self._clock()
        self._offset = seconds + micros / 1e6 - (before + after) / 2
        decoded = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in reports.items()}
        stale = peer.absorb(decoded, self._clock() + self._offset)
        if stale:
            await self._client.hdel(self.latency_key, *stale)
        self.exchanges += 1

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY or self._last_warning == 0.0:
            self._last_warning = now
            log.warning("%s", message)


def is_redis_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("redis://", "rediss://", "unix://"))
