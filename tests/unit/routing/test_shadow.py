"""Shadow comparison: answer similarity and the per-model report."""

from __future__ import annotations

import pytest

from tollgate.routing.shadow import Outcome, ShadowStats, similarity


def test_similarity_of_answers() -> None:
    assert similarity("The cat sat.", "the CAT sat") == (1.0, 1.0)  # case and punctuation do not count
    assert similarity("", "") == (1.0, 1.0)
    assert similarity("yes", "") == (0.0, 0.0)
    jaccard, ratio = similarity("a b c d", "d c b a")
    assert jaccard == 1.0 and ratio == 0.25  # same words, reversed order: the sequence ratio sees it
    jaccard, ratio = similarity("paris is the capital", "the capital is paris")
    assert jaccard == 1.0 and 0 < ratio < 1
    assert similarity("one two", "three four") == (0.0, 0.0)


def _o(latency: float, cost: int = 100, error: str | None = None, text: str | None = "a b") -> Outcome:
    return Outcome(latency, 10, 5, cost, error, text)


def test_the_report_compares_latency_cost_errors_and_similarity() -> None:
    stats = ShadowStats("smart", "cand/m")
    stats.add("p/m", _o(100.0), _o(50.0, cost=300, text="a c"))
    stats.add("p/m", _o(200.0), _o(150.0, cost=300, error="upstream_error", text=None))
    stats.add("p/m", _o(300.0, text=None), _o(250.0, cost=300))  # primary text unknown: not compared
    stats.dropped = 4
    report = stats.report(0.5, 1)
    assert report["mirrored"] == 3 and report["dropped"] == 4 and report["in_flight"] == 1
    assert report["primary"]["latency_ms"]["p50"] == 200.0  # type: ignore[index, call-overload]
    assert report["candidate_results"]["errors"] == 1  # type: ignore[index, call-overload]
    assert report["candidate_results"]["error_rate"] == pytest.approx(0.3333, abs=1e-4)  # type: ignore[index, call-overload]
    cmp = report["comparison"]
    assert cmp["latency_p50_ratio"] == 0.75 and cmp["cost_ratio"] == 3.0  # type: ignore[index, call-overload]
    assert cmp["similarity_compared"] == 1  # type: ignore[index, call-overload]
    assert cmp["similarity_jaccard"] == {"mean": round(1 / 3, 4), "p50": round(1 / 3, 4), "min": round(1 / 3, 4)}  # type: ignore[index, call-overload]
