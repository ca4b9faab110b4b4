"""Circuit breaker per deployment: closed → open (consecutive failures or error rate) → half-open probe → closed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]

_BUCKETS = 10  # the error-rate window is kept as this many fixed buckets: O(1) per call, no per-call list


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds; see ``routing.breaker`` in docs/configuration.md."""

    enabled: bool = True
    consecutive_failures: int = 5
    error_rate: float = 0.5
    min_calls: int = 20
    window_seconds: float = 30.0
    open_seconds: float = 30.0
    half_open_probes: int = 1


class CircuitBreaker:
    """One deployment's breaker. Pure: every method takes ``now`` (monotonic seconds) from the caller."""

    __slots__ = (
        "_bucket_at",
        "_calls",
        "_failures",
        "_probe_started",
        "consecutive",
        "half_opens",
        "opened_at",
        "probes",
        "reason",
        "state",
    )

    def __init__(self) -> None:
        self.state: BreakerState = "closed"
        self.consecutive = 0
        self.opened_at = 0.0
        self.reason = ""
        self.probes = 0  # probes in flight while half-open
        self.half_opens = 0  # times the open time ran out (open -> half_open), for metrics
        self._probe_started = 0.0
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._bucket_at = [-1] * _BUCKETS  # which window slot each bucket currently counts

    def current(self, now: float, settings: BreakerSettings) -> BreakerState:
        """The state as of ``now``: an open breaker whose open time is over reads as half-open."""
        if self.state == "open" and now - self.opened_at >= settings.open_seconds:
            self.state = "half_open"
            self.probes = 0
            self.half_opens += 1
        return self.state

    def allow(self, now: float, settings: BreakerSettings) -> bool:
        """Whether a call may go to this deployment now; a half-open breaker lets ``half_open_probes`` through.

        A call allowed here must be followed by ``success`` or ``failure`` (or ``release`` if it was not made)."""
        if not settings.enabled:
            return True
        state = self.current(now, settings)
        if state == "closed":
            return True
        if state == "open":
            return False
        # A probe that never reported back (its request was cancelled) must not wedge the breaker half-open.
        if self.probes >= settings.half_open_probes and now - self._probe_started < settings.open_seconds:
            return False
        if self.probes >= settings.half_open_probes:
            self.probes = 0
        self.probes += 1
        self._probe_started = now
        return True

    def release(self) -> None:
        """An allowed call was not made after all (e.g. the request was rejected before sending)."""
        if self.state == "half_open" and self.probes > 0:
            self.probes -= 1

    def success(self, now: float, settings: BreakerSettings) -> BreakerState | None:
        """Record a success; returns the new state if it changed."""
        self._count(now, settings, failed=False)
        self.consecutive = 0
        if self.state != "closed":
            self.state, self.probes, self.reason = "closed", 0, ""
            self._reset_window()
            return "closed"
        return None

    def failure(self, now: float, settings: BreakerSettings) -> BreakerState | None:
        """Record a failure; returns the new state if it changed (a failed probe reopens at once)."""
        self._count(now, settings, failed=True)
        self.consecutive += 1
        if self.state == "half_open":
            return self._open(now, "the half-open probe failed")
        if self.state == "open":
            return None
        if self.consecutive >= settings.consecutive_failures:
            return self._open(now, f"{self.consecutive} consecutive failures")
        calls, failures = self._window(now, settings)
        if calls >= settings.min_calls and failures >= settings.error_rate * calls:
            return self._open(now, f"error rate {failures}/{calls} over {settings.window_seconds:g}s")
        return None

    def adopt_open(self, opened_at: float, reason: str) -> bool:
        """Apply an opening another replica made (routing/shared.py): open since ``opened_at`` (this process's
        clock), unless this breaker already opened later. Returns whether anything changed."""
        if self.state == "open" and self.opened_at >= opened_at:
            return False
        self.state, self.opened_at, self.reason, self.probes = "open", opened_at, reason, 0
        return True

    def adopt_closed(self, closed_at: float) -> bool:
        """Apply a close another replica made (its probe succeeded at ``closed_at``, this process's clock),
        unless this breaker reopened after it. Returns whether anything changed."""
        if self.state == "closed" or self.opened_at > closed_at:
            return False
        self.state, self.probes, self.reason, self.consecutive = "closed", 0, "", 0
        self._reset_window()
        return True

    def _open(self, now: float, reason: str) -> BreakerState:
        self.state, self.opened_at, self.reason, self.probes = "open", now, reason, 0
        return "open"

    def _slot(self, now: float, settings: BreakerSettings) -> int:
        return int(now // (settings.window_seconds / _BUCKETS))

    def _count(self, now: float, settings: BreakerSettings, *, failed: bool) -> None:
        slot = self._slot(now, settings)
        i = slot % _BUCKETS
        if self._bucket_at[i] != slot:
            self._bucket_at[i], self._calls[i], self._failures[i] = slot, 0, 0
        self._calls[i] += 1
        if failed:
            self._failures[i] += 1

    def _window(self, now: float, settings: BreakerSettings) -> tuple[int, int]:
        oldest = self._slot(now, settings) - _BUCKETS + 1
        calls = failures = 0
        for i in range(_BUCKETS):
            if self._bucket_at[i] >= oldest:
                calls += self._calls[i]
                failures += self._failures[i]
        return calls, failures

    def _reset_window(self) -> None:
        self._calls = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._bucket_at = [-1] * _BUCKETS

    def window(self, now: float, settings: BreakerSettings) -> tuple[int, int]:
        """Calls and failures counted in the error-rate window ending at ``now``."""
        return self._window(now, settings)
