"""Routing strategies and the in-process routing state they read (breakers, latency, in-flight, retry budget)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tollgate.providers.base import Deployment
from tollgate.routing.breaker import BreakerSettings, CircuitBreaker
from tollgate.routing.events import RoutingEvents
from tollgate.routing.queue import QueueSettings, SlotQueue
from tollgate.routing.retry import BudgetSettings, RetryBudget, RetrySettings

Strategy = Literal["priority", "weighted", "least_latency", "lowest_cost", "least_busy"]
STRATEGIES: tuple[Strategy, ...] = ("priority", "weighted", "least_latency", "lowest_cost", "least_busy")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment of a route with its routing attributes; built once per config version."""

    deployment: Deployment
    index: int = 0  # position in the config: the tie-breaker of every strategy
    weight: float = 1.0
    priority: int = 0  # tier: lower tiers first
    max_concurrency: int | None = None
    tags: tuple[str, ...] = ()
    region: str | None = None
    # Nano-dollars per prompt token and per output token, from the price table; None when unpriced.
    input_nanos: float | None = None
    output_nanos: float | None = None
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.deployment.label)

    def estimated_nanos(self, prompt_tokens: int, output_tokens: int) -> float | None:
        if self.input_nanos is None or self.output_nanos is None:
            return None
        return prompt_tokens * self.input_nanos + output_tokens * self.output_nanos


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    retries: RetrySettings = field(default_factory=RetrySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    latency_alpha: float = 0.3
    queue: QueueSettings = field(default_factory=QueueSettings)


class LatencyStats:
    """Exponentially weighted moving averages of time to first byte and total time, in seconds."""

    __slots__ = ("samples", "total", "ttfb", "ttfb_samples")

    def __init__(self) -> None:
        self.ttfb: float | None = None
        self.total: float | None = None
        self.samples = 0  # total-time samples
        self.ttfb_samples = 0

    def record(self, ttfb: float | None, total: float | None, alpha: float) -> None:
        if ttfb is not None:
            self.ttfb = ttfb if self.ttfb is None else self.ttfb + alpha * (ttfb - self.ttfb)
            self.ttfb_samples += 1
        if total is not None:
            self.total = total if self.total is None else self.total + alpha * (total - self.total)
            self.samples += 1


@dataclass(frozen=True, slots=True)
class FleetLatency:
    """The other replicas' latency averages for one deployment, combined (routing/shared.py), and how many
    recent samples this replica and the others hold: least_latency blends them with the local average."""

    ttfb: float | None = None
    ttfb_weight: float = 0.0  # the others' recent time-to-first-byte samples
    total: float | None = None
    total_weight: float = 0.0
    local_ttfb_weight: float = 0.0  # this replica's recent samples, as of the last exchange
    local_total_weight: float = 0.0


TransitionListener = Callable[[str, CircuitBreaker, float], None]


class RoutingState:
    """What routing remembers between requests, in this process: one breaker, latency average and in-flight
    count per deployment (by ``provider/model``) and the retry budget. The clock and RNG are injected."""

    def __init__(
        self,
        settings: RoutingSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or RoutingSettings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.breakers: dict[str, CircuitBreaker] = {}
        self.latency: dict[str, LatencyStats] = {}
        self.in_flight: dict[str, int] = {}
        self.budget = RetryBudget()
        self.events = RoutingEvents()  # cumulative counts for metrics (routing/events.py)
        self.queues: dict[str, SlotQueue] = {}  # waiters for a slot, per deployment (routing/queue.py)
        # Shared with other replicas over Redis when on (state/routing_bus.py): the others' latency, replaced
        # whole at each exchange, and who hears of this replica's breaker transitions.
        self.fleet_latency: dict[str, FleetLatency] = {}
        self.on_transition: TransitionListener | None = None

    def transitioned(self, key: str, new_state: str, now: float) -> None:
        """A breaker of this replica changed state by its own calls: count it, and tell the other replicas."""
        self.events.transition(key, new_state)
        listener = self.on_transition
        if listener is not None:
            listener(key, self.breaker(key), now)

    def breaker(self, key: str) -> CircuitBreaker:
        found = self.breakers.get(key)
        if found is None:
            found = self.breakers[key] = CircuitBreaker()
        return found

    def stats(self, key: str) -> LatencyStats:
        found = self.latency.get(key)
        if found is None:
            found = self.latency[key] = LatencyStats()
        return found

    def unavailable(self, cand: Candidate, now: float) -> str | None:
        """Why ``cand`` must be skipped now (read-only: takes no probe slot), or None."""
        breaker = self.breakers.get(cand.key)
        if breaker is not None and self.settings.breaker.enabled:
            state = breaker.current(now, self.settings.breaker)
            if state == "open":
                left = self.settings.breaker.open_seconds - (now - breaker.opened_at)
                return f"circuit breaker open ({breaker.reason}); half-open in {max(left, 0.0):.1f}s"
            if state == "half_open" and breaker.probes >= self.settings.breaker.half_open_probes:
                return "circuit breaker half-open and its probe is in flight"
        if cand.max_concurrency is not None and self.in_flight.get(cand.key, 0) >= cand.max_concurrency:
            return f"at max_concurrency ({cand.max_concurrency} in flight)"
        return None

    def acquire(self, cand: Candidate, now: float) -> str | None:
        """Take the deployment for one call (a half-open probe slot, an in-flight count), or say why not."""
        if cand.max_concurrency is not None and self.in_flight.get(cand.key, 0) >= cand.max_concurrency:
            return f"at max_concurrency ({cand.max_concurrency} in flight)"
        breaker = self.breaker(cand.key)
        if not breaker.allow(now, self.settings.breaker):
            reason = self.unavailable(cand, now)
            return reason or "circuit breaker open"
        self.in_flight[cand.key] = self.in_flight.get(cand.key, 0) + 1
        return None

    def release(self, cand: Candidate) -> None:
        """The call taken by ``acquire`` ended (its outcome is recorded separately). With requests queued
        for the deployment, the slot goes straight to the next of them instead of being freed."""
        queue = self.queues.get(cand.key)
        if queue is not None and queue.hand_over():
            return
        self.in_flight[cand.key] = max(self.in_flight.get(cand.key, 0) - 1, 0)

    def take_queued(self, cand: Candidate, now: float) -> str | None:
        """Use a slot a queue handed over (already counted in flight), unless the breaker now refuses."""
        if not self.breaker(cand.key).allow(now, self.settings.breaker):
            self.release(cand)
            return self.unavailable(cand, now) or "circuit breaker open"
        return None


def order(
    strategy: Strategy,
    candidates: Sequence[Candidate],
    state: RoutingState,
    *,
    prompt_tokens: int = 0,
    output_tokens: int = 0,
    stream: bool = False,
) -> list[Candidate]:
    """Candidates in the order to try them: priority tiers ascending, the strategy's order within a tier."""
    if len(candidates) < 2:
        return list(candidates)
    key = _sort_key(strategy, state, prompt_tokens, output_tokens, stream)
    return sorted(candidates, key=key)


def _latency(stats: LatencyStats | None, stream: bool, fleet: FleetLatency | None = None) -> float | None:
    """Time to first byte for streams, total time otherwise; the other one when only it was measured.
    With other replicas' averages (``fleet``), each is their sample-weighted blend with the local one."""
    if fleet is not None:
        return _fleet_latency(stats, stream, fleet)
    if stats is None:
        return None
    first, second = (stats.ttfb, stats.total) if stream else (stats.total, stats.ttfb)
    return first if first is not None else second


def _fleet_latency(stats: LatencyStats | None, stream: bool, f: FleetLatency) -> float | None:
    ttfb = None if stats is None else stats.ttfb
    total = None if stats is None else stats.total
    if stream:
        value = _blend(ttfb, f.local_ttfb_weight, f.ttfb, f.ttfb_weight)
        return value if value is not None else _blend(total, f.local_total_weight, f.total, f.total_weight)
    value = _blend(total, f.local_total_weight, f.total, f.total_weight)
    return value if value is not None else _blend(ttfb, f.local_ttfb_weight, f.ttfb, f.ttfb_weight)


def _blend(local: float | None, local_weight: float, others: float | None, others_weight: float) -> float | None:
    if others is None:
        return local
    if local is None:  # measured only elsewhere: their average, however few their recent samples
        return others
    if others_weight <= 0:  # nobody else called it lately: this replica's own measurement stands
        return local
    return (local * local_weight + others * others_weight) / (local_weight + others_weight)


SortKey = Callable[[Candidate], tuple[float, float, int]]


def _sort_key(strategy: Strategy, state: RoutingState, prompt_tokens: int, output_tokens: int, stream: bool) -> SortKey:
    if strategy == "weighted":
        # Efraimidis-Spirakis: sorting by -u**(1/w) is a weighted random permutation (no replacement).
        rng = state.rng
        draws: dict[int, float] = {}

        def weighted(c: Candidate) -> tuple[float, float, int]:
            draw = draws.get(c.index)
            if draw is None:
                draw = draws[c.index] = -(rng.random() ** (1.0 / c.weight))
            return (c.priority, draw, c.index)

        return weighted
    if strategy == "least_latency":
        latency, fleet = state.latency, state.fleet_latency

        def fastest(c: Candidate) -> tuple[float, float, int]:
            shared = fleet.get(c.key) if fleet else None
            stats = latency.get(c.key)
            value = _latency(stats, stream) if shared is None else _fleet_latency(stats, stream, shared)
            # Unmeasured deployments sort first, so each gets measured.
            return (c.priority, -1.0 if value is None else value, c.index)

        return fastest
    if strategy == "lowest_cost":

        def cheapest(c: Candidate) -> tuple[float, float, int]:
            cost = c.estimated_nanos(prompt_tokens, output_tokens)
            return (c.priority, float("inf") if cost is None else cost, c.index)

        return cheapest
    if strategy == "least_busy":
        in_flight = state.in_flight

        def idlest(c: Candidate) -> tuple[float, float, int]:
            return (c.priority, in_flight.get(c.key, 0), c.index)

        return idlest

    def configured(c: Candidate) -> tuple[float, float, int]:
        return (c.priority, 0.0, c.index)

    return configured


def describe(
    strategy: Strategy, cand: Candidate, state: RoutingState, *, prompt_tokens: int, output_tokens: int, stream: bool
) -> str:
    """Why the strategy placed ``cand`` where it did, in words (for /v1/route/explain)."""
    tier = f"tier {cand.priority}"
    if strategy == "weighted":
        return f"{tier}, weight {cand.weight:g} (random draw)"
    if strategy == "least_latency":
        value = _latency(state.latency.get(cand.key), stream, state.fleet_latency.get(cand.key))
        what = "time to first byte" if stream else "total time"
        if value is None:
            return f"{tier}, not measured yet (tried first to measure it)"
        shared = " (blended with other replicas' averages)" if cand.key in state.fleet_latency else ""
        return f"{tier}, {what} average {value * 1000:.1f} ms{shared}"
    if strategy == "lowest_cost":
        cost = cand.estimated_nanos(prompt_tokens, output_tokens)
        if cost is None:
            return f"{tier}, no price known (sorted last)"
        return f"{tier}, estimated ${cost / 1e9:.6f} for {prompt_tokens} prompt + {output_tokens} output tokens"
    if strategy == "least_busy":
        return f"{tier}, {state.in_flight.get(cand.key, 0)} in flight"
    return f"{tier}, position {cand.index + 1} in the config"
