"""Slot queues: priority order, FIFO within a priority, waiters that left are skipped; the caller's priority."""

from __future__ import annotations

import asyncio

from tollgate.context import Principal, RequestContext
from tollgate.routing.queue import SlotQueue, priority_of


async def test_hand_over_serves_highest_priority_first_fifo_within_and_skips_cancelled() -> None:
    queue = SlotQueue()
    a, b, c, d = queue.push(0), queue.push(5), queue.push(5), queue.push(9)
    d.cancel()  # its client left
    assert len(queue) == 3
    order = []
    for _ in range(3):
        assert queue.hand_over()
        order.append(next(name for name, f in (("a", a), ("b", b), ("c", c)) if f.done() and name not in order))
    assert order == ["b", "c", "a"]
    assert not queue.hand_over() and len(queue) == 0
    await asyncio.sleep(0)


def _ctx(metadata: dict[str, object] | None) -> RequestContext:
    ctx = RequestContext(request_id="r", front_door="openai", endpoint="chat", config_version="v")
    if metadata is not None:
        ctx.principal = Principal(key_id="k", name="k", role="user", metadata=metadata)  # type: ignore[arg-type]
    return ctx


def test_priority_comes_from_the_callers_metadata() -> None:
    assert priority_of(_ctx(None)) == 0
    assert priority_of(_ctx({})) == 0
    assert priority_of(_ctx({"priority": 7})) == 7
    assert priority_of(_ctx({"priority": " -2 "})) == -2
    assert priority_of(_ctx({"priority": "gold"})) == 0
    assert priority_of(_ctx({"priority": True})) == 0
