"""Backoff with full jitter stays within its bounds; Retry-After is honoured only when short; the budget caps extras."""

from __future__ import annotations

import random

import pytest

from tollgate.routing.retry import BudgetSettings, RetryBudget, RetrySettings, after_failure, backoff

R = RetrySettings(max_retries=3, backoff_base=0.1, backoff_max=1.0, retry_after_max=2.0)


@pytest.mark.parametrize(("retry", "ceiling"), [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)])
def test_full_jitter_is_uniform_up_to_the_exponential_ceiling(retry: int, ceiling: float) -> None:
    rng = random.Random(7)
    draws = [backoff(retry, R, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in draws)
    assert max(draws) > ceiling * 0.9 and min(draws) < ceiling * 0.1  # spread over the whole range


def test_without_jitter_the_backoff_is_the_ceiling() -> None:
    fixed = RetrySettings(backoff_base=0.1, backoff_max=1.0, jitter=False)
    assert [backoff(n, fixed, random.Random(1)) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_short_retry_after_is_waited_in_full() -> None:
    choice = after_failure(0, 1.5, R, random.Random(1))
    assert choice.step == "retry" and choice.delay == 1.5


def test_long_retry_after_moves_on_without_waiting() -> None:
    choice = after_failure(0, 7.0, R, random.Random(1))
    assert choice.step == "fallback" and choice.delay == 0.0
    assert "over the 2s cap" in choice.reason


def test_no_retry_after_uses_backoff_and_retries_run_out() -> None:
    rng = random.Random(3)
    first = after_failure(0, None, R, rng)
    assert first.step == "retry" and 0.0 <= first.delay <= 0.1
    assert after_failure(3, None, R, rng).step == "fallback"
    assert after_failure(0, None, RetrySettings(max_retries=0), rng).step == "fallback"


def test_budget_allows_ratio_of_requests_plus_the_floor() -> None:
    s = BudgetSettings(ratio=0.2, window_seconds=10, min_retries=2)
    budget = RetryBudget()
    for i in range(50):
        budget.record_request(i * 0.1, s)
    spent = sum(budget.try_spend(5.0, s) for _ in range(100))
    assert spent == 12  # 0.2 x 50 + 2
    assert not budget.can_spend(5.0, s)


def test_budget_window_slides() -> None:
    s = BudgetSettings(ratio=0.0, window_seconds=10, min_retries=1)
    budget = RetryBudget()
    assert budget.try_spend(0.0, s)
    assert not budget.try_spend(5.0, s)
    assert budget.try_spend(11.0, s)  # the old extra call left the window
    assert budget.totals(11.0, s) == (0, 1)
