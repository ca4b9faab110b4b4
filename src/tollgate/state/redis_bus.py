"""What the gateway's Redis pub/sub buses share (key invalidation, routing state): a client that fails fast,
and stopping their background tasks after what is queued went out."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def fail_fast_client(url: str, timeout: float) -> redis.Redis:
    """A client without retries: a bus that cannot reach Redis says so at once and tries again later."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


async def drain_and_cancel(queue: asyncio.Queue[Any] | None, tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Give queued messages ``grace`` seconds to go out, then cancel the bus's tasks and wait for them."""
    if queue is not None and tasks:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), grace)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
