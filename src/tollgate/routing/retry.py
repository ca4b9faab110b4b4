"""Retry decisions: exponential backoff with full jitter, Retry-After handling, and the retry budget."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """See ``routing.retries`` in docs/configuration.md."""

    max_retries: int = 0
    backoff_base: float = 0.1
    backoff_max: float = 2.0
    jitter: bool = True
    retry_after_max: float = 2.0


def backoff(retry: int, settings: RetrySettings, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): full jitter over ``min(max, base * 2**(retry-1))``."""
    ceiling = min(settings.backoff_max, settings.backoff_base * (2 ** max(retry - 1, 0)))
    return rng.uniform(0.0, ceiling) if settings.jitter else ceiling


NextStep = Literal["retry", "fallback"]


@dataclass(frozen=True, slots=True)
class RetryChoice:
    """What to do after a retryable failure: wait ``delay`` and retry the same deployment, or fall back."""

    step: NextStep
    delay: float
    reason: str


def after_failure(
    retries_done: int, retry_after: float | None, settings: RetrySettings, rng: random.Random
) -> RetryChoice:
    """Same-deployment retry or fallback, given the retries this request already made and the provider's hint.

    A short Retry-After is honoured (waited, not shortened); a long one means this deployment will not
    recover in time for this request, so the next candidate is tried at once."""
    if retries_done >= settings.max_retries:
        return RetryChoice("fallback", 0.0, f"no retries left ({settings.max_retries} per request)")
    if retry_after is not None:
        if retry_after > settings.retry_after_max:
            return RetryChoice(
                "fallback", 0.0, f"Retry-After {retry_after:g}s is over the {settings.retry_after_max:g}s cap"
            )
        return RetryChoice("retry", max(retry_after, 0.0), f"honouring Retry-After {retry_after:g}s")
    delay = backoff(retries_done + 1, settings, rng)
    return RetryChoice("retry", delay, f"backoff {delay:.3f}s")


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """See ``routing.retry_budget`` in docs/configuration.md."""

    ratio: float = 0.2
    window_seconds: float = 10.0
    min_retries: int = 3


class RetryBudget:
    """Extra upstream calls (retries and fallbacks) allowed: ``ratio`` x requests + ``min_retries`` per window.

    Counted in fixed buckets over the window, so both operations are O(buckets) with no allocation."""

    __slots__ = ("_at", "_extra", "_requests")

    def __init__(self) -> None:
        self._requests = [0] * _BUCKETS
        self._extra = [0] * _BUCKETS
        self._at = [-1] * _BUCKETS

    def _bucket(self, now: float, settings: BudgetSettings) -> int:
        slot = int(now // (settings.window_seconds / _BUCKETS))
        i = slot % _BUCKETS
        if self._at[i] != slot:
            self._at[i], self._requests[i], self._extra[i] = slot, 0, 0
        return i

    def record_request(self, now: float, settings: BudgetSettings) -> None:
        self._requests[self._bucket(now, settings)] += 1

    def totals(self, now: float, settings: BudgetSettings) -> tuple[int, int]:
        """Requests and extra calls in the window ending at ``now``."""
        oldest = int(now // (settings.window_seconds / _BUCKETS)) - _BUCKETS + 1
        requests = extra = 0
        for i in range(_BUCKETS):
            if self._at[i] >= oldest:
                requests += self._requests[i]
                extra += self._extra[i]
        return requests, extra

    def can_spend(self, now: float, settings: BudgetSettings) -> bool:
        requests, extra = self.totals(now, settings)
        return extra + 1 <= settings.ratio * requests + settings.min_retries

    def try_spend(self, now: float, settings: BudgetSettings) -> bool:
        """Take one extra call from the budget if there is room; False means: do not make the call."""
        if not self.can_spend(now, settings):
            return False
        self._extra[self._bucket(now, settings)] += 1
        return True
