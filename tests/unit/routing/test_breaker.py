"""The circuit breaker's state machine, driven by an injected clock: open, half-open probe, close or reopen."""

from __future__ import annotations

from tollgate.routing.breaker import BreakerSettings, CircuitBreaker

S = BreakerSettings(consecutive_failures=3, error_rate=0.5, min_calls=10, window_seconds=10, open_seconds=5)


def test_opens_after_consecutive_failures_and_a_success_resets_the_run() -> None:
    b = CircuitBreaker()
    assert b.failure(0.0, S) is None
    assert b.failure(0.1, S) is None
    assert b.success(0.2, S) is None  # the run restarts
    assert b.failure(0.3, S) is None and b.failure(0.4, S) is None
    assert b.failure(0.5, S) == "open"
    assert b.reason == "3 consecutive failures"
    assert not b.allow(0.6, S)
    assert b.current(5.4, S) == "open"


def test_half_open_after_the_open_time_lets_exactly_one_probe_through() -> None:
    b = CircuitBreaker()
    for t in (0.0, 0.1, 0.2):
        b.failure(t, S)
    assert b.current(5.3, S) == "half_open"
    assert b.allow(5.3, S)
    assert not b.allow(5.31, S)  # the probe is in flight
    assert b.success(5.5, S) == "closed"
    assert b.allow(5.6, S) and b.allow(5.6, S)


def test_a_failed_probe_reopens_for_another_open_period() -> None:
    b = CircuitBreaker()
    for t in (0.0, 0.1, 0.2):
        b.failure(t, S)
    assert b.allow(6.0, S)
    assert b.failure(6.1, S) == "open"
    assert b.reason == "the half-open probe failed"
    assert not b.allow(11.0, S)
    assert b.allow(11.2, S)


def test_a_probe_that_never_reports_back_does_not_wedge_the_breaker() -> None:
    b = CircuitBreaker()
    for t in (0.0, 0.1, 0.2):
        b.failure(t, S)
    assert b.allow(6.0, S)
    assert not b.allow(7.0, S)
    assert b.allow(11.1, S)  # after another open period, a new probe may go


def test_released_probe_frees_the_slot() -> None:
    b = CircuitBreaker()
    for t in (0.0, 0.1, 0.2):
        b.failure(t, S)
    assert b.allow(6.0, S)
    b.release()
    assert b.allow(6.1, S)


def test_opens_on_error_rate_over_the_window_without_a_long_run() -> None:
    b = CircuitBreaker()
    changed = None
    t = 0.0
    # Alternate failure, failure, success: never 3 in a row, but 2/3 of calls fail.
    for i in range(12):
        t += 0.1
        changed = b.success(t, S) if i % 3 == 2 else b.failure(t, S)
        if changed == "open":
            break
    assert changed == "open"
    assert b.reason.startswith("error rate")
    calls, failures = b.window(t, S)
    assert calls >= S.min_calls and failures >= calls * S.error_rate


def test_error_rate_forgets_calls_older_than_the_window() -> None:
    b = CircuitBreaker()
    for i in range(9):  # old failures, spread below the consecutive threshold
        if i % 2:
            b.success(i * 0.1, S)
        else:
            b.failure(i * 0.1, S)
    assert b.window(0.9, S)[0] == 9
    assert b.window(30.0, S) == (0, 0)
    assert b.failure(30.0, S) is None  # one failure in a fresh window opens nothing


def test_disabled_breaker_always_allows() -> None:
    off = BreakerSettings(enabled=False, consecutive_failures=1)
    b = CircuitBreaker()
    b.failure(0.0, off)
    assert b.allow(0.1, off)
