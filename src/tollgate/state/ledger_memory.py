"""In-process ledger (``memory://``): the same semantics as the database backends, nothing persisted."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import date

from tollgate.state.ledger import (
    LATENCY_BOUNDS_MS,
    SHADOW_ENDPOINT,
    AggregateKey,
    GroupBy,
    LedgerRow,
    SpendLine,
    aggregate,
    day_bounds,
    dimension_for,
    sort_lines,
    unique_rows,
)


class MemoryLedgerStore:
    def __init__(self) -> None:
        self._rows: dict[str, LedgerRow] = {}
        self._daily: dict[AggregateKey, SpendLine] = {}

    async def write_batch(self, rows: Sequence[LedgerRow]) -> int:
        new = [r for r in unique_rows(rows) if r.id not in self._rows]
        for row in new:
            self._rows[row.id] = row
        for key, delta in aggregate(new):
            line = self._daily.get(key)
            if line is None:
                line = self._daily[key] = SpendLine(key[2])
            line.add(SpendLine.of(key[2], delta))
        return len(new)

    async def spend(self, by: GroupBy, since: date, until: date, team: str | None = None) -> list[SpendLine]:
        dim, first, last = dimension_for(by, team), since.isoformat(), until.isoformat()
        out: dict[str, SpendLine] = {}
        for (d, day, value), line in self._daily.items():
            if d != dim or not first <= day <= last:
                continue
            group = day if by == "day" else value
            target = out.get(group)
            if target is None:
                target = out[group] = SpendLine(group)
            target.add(line)
        return sort_lines(list(out.values()), by)

    async def scan_totals(self, since: date, until: date) -> SpendLine:
        start, end = day_bounds(since, until)
        total = SpendLine("total")
        for row in self._rows.values():
            if start <= row.ts < end and row.endpoint != SHADOW_ENDPOINT:
                total.requests += 1
                total.errors += 1 if row.status >= 400 else 0
                total.input_tokens += row.input_tokens
                total.output_tokens += row.output_tokens
                total.cached_tokens += row.cached_tokens
                total.cost_nanos += row.cost_nanos
                total.cache_hits += row.cache_hit
                total.cost_saved_nanos += row.cost_saved_nanos
                total.latency_us_sum += round(row.latency_ms * 1000)
                total.latency_buckets[bisect_left(LATENCY_BOUNDS_MS, row.latency_ms)] += 1
        return total

    async def rows_for_request(self, request_id: str) -> list[LedgerRow]:
        return sorted((r for r in self._rows.values() if r.request_id == request_id), key=lambda r: r.ts)
