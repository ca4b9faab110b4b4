"""What routing rules know about budgets: this process's last-seen spent level of each budget counter.

The budget policy learns a budget's level for free: every reservation's answer carries the level of each
counter it touched (the spend of every replica sharing the store, plus what is reserved in flight), and a
settlement moves it by the difference between what was reserved and what was really spent. The policy
writes those numbers here (``record``, ``settle``); a routing rule's ``budget_remaining`` condition reads
them (``level``) with a dict lookup, never a store round trip, so the decision stays as cheap as the other
conditions. The price is staleness: a level is as of this replica's last reservation or settlement on that
budget, and a budget this replica has not reserved on in the current period is unknown (see docs/routing.md).

Levels are keyed by (scope, scope id, period) and carry the end of the period they belong to, so a level
from last month is unknown this month rather than wrong. The table is bounded: past ``max_entries`` budgets
it starts over (the levels come back with the next reservation of each).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_ENTRIES = 100_000


class Spent:
    """One budget counter's level as last seen here, in micro-dollars."""

    __slots__ = ("at", "until", "used")

    def __init__(self, used: int, at: float, until: float) -> None:
        self.used = used  # spent plus reserved in flight, micro-dollars
        self.at = at  # when it was seen (epoch seconds)
        self.until = until  # the end of the budget period it belongs to (epoch seconds; inf: total)


class BudgetLevels:
    """The per-process table of budget levels, shared by the budget policy (writer) and routing rules (reader)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_ENTRIES) -> None:
        self._clock = clock
        self._max = max_entries
        self._levels: dict[tuple[str, str, str], Spent] = {}

    def record(self, scope: str, scope_id: str, period: str, used: int, until: float) -> None:
        """The level a reservation (or refusal) reported for this budget's counter of the current period."""
        levels = self._levels
        if len(levels) >= self._max and (scope, scope_id, period) not in levels:
            levels.clear()
        levels[(scope, scope_id, period)] = Spent(used, self._clock(), until)

    def settle(self, scope: str, scope_id: str, period: str, delta: int) -> None:
        """A settlement moved the counter by ``delta`` (actual minus reserved; usually a refund)."""
        spent = self._levels.get((scope, scope_id, period))
        if spent is not None:
            spent.used = max(0, spent.used + delta)
            spent.at = self._clock()

    def level(self, scope: str, scope_id: str, period: str) -> Spent | None:
        """The level of this budget in its current period, or None when this replica has not seen it."""
        spent = self._levels.get((scope, scope_id, period))
        if spent is None:
            return None
        if self._clock() >= spent.until:  # the period it belongs to is over: the new counter starts empty
            return None
        return spent

    def now(self) -> float:
        return self._clock()

    def __len__(self) -> int:
        return len(self._levels)
