"""Priority queues at ``max_concurrency``: a request that finds every deployment full waits for a slot.

One queue per deployment. Waiters are served highest ``priority`` first (the caller's metadata ``priority``,
an integer set by an admin on the key, user, team or org; 0 when unset), first come first served within a
priority. A slot that frees up is handed straight to the next waiter (the deployment's in-flight count
does not drop in between), so a request arriving meanwhile cannot overtake the queue. The wait is bounded
(``max_wait_seconds``) and so is the queue (``max_size``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass

from tollgate.context import RequestContext


@dataclass(frozen=True, slots=True)
class QueueSettings:
    max_wait_seconds: float = 0.0  # 0: no queue, a full deployment is skipped (and 503 when all are)
    max_size: int = 100  # waiters per deployment

    @property
    def enabled(self) -> bool:
        return self.max_wait_seconds > 0


_seq = itertools.count()


class SlotQueue:
    """The waiters of one deployment, as a heap of (-priority, arrival, future)."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return sum(1 for _, _, f in self._heap if not f.done())

    def push(self, priority: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (-priority, next(_seq), fut))
        return fut

    def hand_over(self) -> bool:
        """Give a freed slot to the next live waiter; False when nobody waits (the slot is then freed)."""
        heap = self._heap
        while heap:
            _, _, fut = heapq.heappop(heap)
            if not fut.done():  # skip waiters that timed out or whose client left
                fut.set_result(None)
                return True
        return False


def priority_of(ctx: RequestContext) -> int:
    """The caller's queue priority: its metadata ``priority`` (an integer, or a string of one); 0 otherwise.
    Only admins set caller metadata, so a client cannot promote its own requests."""
    principal = ctx.principal
    if principal is None:
        return 0
    value = principal.metadata.get("priority")
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return 0
    return 0
