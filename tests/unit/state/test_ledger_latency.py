"""The daily aggregates' latency buckets, the percentiles estimated from them, and cache savings on rows."""

from __future__ import annotations

import orjson
import pytest

from tollgate.state.ledger import LATENCY_BOUNDS_MS, SUM_COLUMNS, LedgerRow, SpendLine, aggregate


def line_of(latencies: list[float]) -> SpendLine:
    rows = [
        LedgerRow(id=f"r{i}", request_id=f"q{i}", ts=0.0, endpoint="chat", latency_ms=ms)
        for i, ms in enumerate(latencies)
    ]
    (key, sums), *_ = aggregate(rows)  # the "all" dimension sorts first
    return SpendLine.of(key[2], sums)


def test_bounds_are_inclusive_and_the_top_bucket_is_open() -> None:
    line = line_of([0.0, 50.0, 50.001, 60_000.0, 60_000.001, 3_600_000.0])  # 0 in [0, 10], 50 in (25, 50]
    assert line.latency_buckets == [1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2]
    assert len(line.latency_buckets) == len(LATENCY_BOUNDS_MS) + 1
    assert line.latency_us_sum == 3_720_100_002
    assert line.latency_mean_ms == round(3_720_100.002 / 6, 3)


def test_percentiles_are_linear_within_the_bucket_they_fall_in() -> None:
    # 100 requests: 40 at most 10 ms, 40 in (50, 100], 20 in (1000, 2500].
    line = line_of([8.0] * 40 + [75.0] * 40 + [2000.0] * 20)
    assert line.latency_quantile_ms(0.2) == 5.0  # 20th of the 40 in [0, 10]
    assert line.latency_quantile_ms(0.5) == 62.5  # 10th of the 40 in (50, 100]
    assert line.latency_quantile_ms(0.95) == 2125.0  # 15th of the 20 in (1000, 2500]
    assert line.latency_quantile_ms(1.0) == 2500.0


def test_a_percentile_in_the_open_top_bucket_reads_as_its_lower_bound() -> None:
    line = line_of([10.0, 90_000.0, 120_000.0])
    assert line.latency_quantile_ms(0.95) == float(LATENCY_BOUNDS_MS[-1])


def test_no_requests_no_latency() -> None:
    empty = SpendLine("x")
    assert empty.latency_mean_ms is None and empty.latency_quantile_ms(0.5) is None


def test_stored_sums_round_trip_in_column_order() -> None:
    values = tuple(range(1, len(SUM_COLUMNS) + 1))
    line = SpendLine.of("g", values)
    assert line.values() == values
    assert (line.cache_hits, line.cost_saved_nanos, line.latency_us_sum) == (7, 8, 9)
    twice = SpendLine.of("g", values)
    twice.add(line)
    assert twice.values() == tuple(2 * v for v in values)


@pytest.mark.parametrize("saved", [0, 1_234_567])
def test_cache_savings_survive_the_spool_and_rows_spooled_before_them_read_as_none(saved: int) -> None:
    row = LedgerRow(id="a", request_id="b", ts=1.5, endpoint="chat", cache_hit=True, cost_saved_nanos=saved)
    assert LedgerRow.from_json(row.to_json()) == row
    old = row.to_dict()
    del old["cost_saved_nanos"]
    assert LedgerRow.from_json(orjson.dumps(old)).cost_saved_nanos == 0
