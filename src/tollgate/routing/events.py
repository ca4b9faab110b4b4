"""What routing did, per deployment, as plain cumulative counters: read into Prometheus metrics by the recorder.

The dispatcher counts here (a dict increment, no lock, no Prometheus on the request path); the metrics
recorder reads the counters at most once a second and at each scrape, and adds the differences to its
metrics (observability/recorder.py). Keys are deployment keys (``provider/model``) as the dispatcher sees
them; the recorder exports only the deployments the config declares, so a client naming direct
``provider/model`` addresses cannot grow the number of series.
"""

from __future__ import annotations

from typing import Literal

CallOutcome = Literal["success", "retryable_error", "error"]
SkipReason = Literal["breaker_open", "max_concurrency", "queue_full", "queue_timeout"]


class RoutingEvents:
    """Cumulative counts since the process started, by deployment key."""

    __slots__ = ("breaker_transitions", "calls", "fallbacks", "retries", "shadow_calls", "skips")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, CallOutcome], int] = {}  # upstream calls, by how they ended
        self.retries: dict[str, int] = {}  # same-deployment retries (after a backoff)
        self.fallbacks: dict[str, int] = {}  # times a failed deployment was left for the next candidate
        self.skips: dict[tuple[str, SkipReason], int] = {}  # candidates passed over without a call
        self.breaker_transitions: dict[tuple[str, str], int] = {}  # (deployment, new state)
        self.shadow_calls: dict[tuple[str, str], int] = {}  # (candidate, outcome): mirrored calls

    def call(self, key: str, outcome: CallOutcome) -> None:
        k = (key, outcome)
        self.calls[k] = self.calls.get(k, 0) + 1

    def retry(self, key: str) -> None:
        self.retries[key] = self.retries.get(key, 0) + 1

    def fallback(self, key: str) -> None:
        self.fallbacks[key] = self.fallbacks.get(key, 0) + 1

    def skip(self, key: str, reason: SkipReason) -> None:
        k = (key, reason)
        self.skips[k] = self.skips.get(k, 0) + 1

    def transition(self, key: str, state: str) -> None:
        k = (key, state)
        self.breaker_transitions[k] = self.breaker_transitions.get(k, 0) + 1

    def shadow(self, key: str, outcome: str) -> None:
        k = (key, outcome)
        self.shadow_calls[k] = self.shadow_calls.get(k, 0) + 1


def skip_reason(reason: str) -> SkipReason:
    """The bounded label of a skip, from the reason text ``RoutingState.acquire`` gave."""
    return "max_concurrency" if reason.startswith("at max_concurrency") else "breaker_open"
