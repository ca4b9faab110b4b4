"""The pure side of shared routing state (routing/shared.py): messages, how they apply, how latency combines."""

from __future__ import annotations

import pytest

from tollgate.providers.base import Deployment
from tollgate.routing.breaker import BreakerSettings
from tollgate.routing.shared import (
    BreakerNews,
    RecentSamples,
    SharedRouting,
    apply_news,
    combine,
    decode_report,
    encode_report,
    news_of,
)
from tollgate.routing.strategies import Candidate, FleetLatency, RoutingSettings, RoutingState, order


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """Two buses joined back to back in memory: what one publishes, the other's coordinator receives."""

    def __init__(self, origin: str, offset: float) -> None:
        self.origin = origin
        self._offset = offset
        self.sent: list[tuple[str, bytes, bool]] = []

    @property
    def offset(self) -> float:
        return self._offset

    def publish(self, key: str, message: bytes, is_open: bool) -> None:
        self.sent.append((key, message, is_open))


SETTINGS = RoutingSettings(breaker=BreakerSettings(consecutive_failures=2, open_seconds=10.0))


def _state(clock: Clock) -> RoutingState:
    return RoutingState(SETTINGS, clock=clock)


def test_news_round_trips_and_malformed_messages_are_ignored() -> None:
    news = BreakerNews("openai/gpt-4o", "open", 1.7e9 + 0.25, "5 consecutive failures", "abc")
    assert BreakerNews.decode(news.encode()) == news
    for bad in (b"", b"[]", b"{", b'{"k": "a", "s": "half_open", "at": 1}', b'{"k": "a", "s": "open", "at": true}'):
        assert BreakerNews.decode(bad) is None


def test_an_opening_travels_on_the_shared_clock_and_lands_at_the_same_moment() -> None:
    a_clock, b_clock = Clock(), Clock()
    b_clock.now = 5000.0  # another process: another monotonic origin
    a, b = _state(a_clock), _state(b_clock)
    a_offset, b_offset = 1.7e9 - 100.0, 1.7e9 - 5000.0  # both clocks read 1.7e9 on the shared clock now
    breaker = a.breaker("d")
    a_clock.now += 1.0
    breaker.failure(a_clock.now, SETTINGS.breaker)
    assert breaker.failure(a_clock.now, SETTINGS.breaker) == "open"
    news = news_of("d", breaker, a_clock.now, a_offset, "a")
    assert news is not None and news.state == "open" and news.at == pytest.approx(1.7e9 + 1.0)
    b_clock.now += 1.2  # delivered 0.2 s later
    assert apply_news(b, news, b_clock.now, b_offset)
    assert b.breakers["d"].opened_at == pytest.approx(5001.0)  # the publisher's moment, in B's clock
    b_clock.now += 9.7
    assert b.breakers["d"].current(b_clock.now, SETTINGS.breaker) == "open"
    b_clock.now += 0.1  # 10 s after the opening: half-open here too
    assert b.breakers["d"].current(b_clock.now, SETTINGS.breaker) == "half_open"


def test_a_later_opening_wins_and_an_earlier_one_changes_nothing() -> None:
    clock = Clock()
    state = _state(clock)
    assert apply_news(state, BreakerNews("d", "open", 90.0, "x"), clock.now, 0.0)
    assert not apply_news(state, BreakerNews("d", "open", 80.0, "y"), clock.now, 0.0)
    assert state.breakers["d"].opened_at == 90.0
    assert apply_news(state, BreakerNews("d", "open", 95.0, "z"), clock.now, 0.0)
    assert state.breakers["d"].opened_at == 95.0 and state.breakers["d"].reason == "z, on another replica"


def test_a_time_in_the_future_counts_as_now() -> None:
    clock = Clock()
    state = _state(clock)
    apply_news(state, BreakerNews("d", "open", 130.0), clock.now, 0.0)  # a skewed clock: 30 s ahead
    assert state.breakers["d"].opened_at == clock.now


def test_a_close_applies_unless_the_breaker_reopened_after_it() -> None:
    clock = Clock()
    state = _state(clock)
    assert not apply_news(state, BreakerNews("d", "closed", 99.0), clock.now, 0.0)  # nothing to close
    apply_news(state, BreakerNews("d", "open", 95.0), clock.now, 0.0)
    assert not apply_news(state, BreakerNews("d", "closed", 94.0), clock.now, 0.0)  # older than the opening
    assert state.breakers["d"].state == "open"
    assert apply_news(state, BreakerNews("d", "closed", 99.0), clock.now, 0.0)
    breaker = state.breakers["d"]
    assert (
        breaker.state == "closed"
        and breaker.consecutive == 0
        and breaker.window(clock.now, SETTINGS.breaker)
        == (
            0,
            0,
        )
    )


def test_half_open_is_not_news() -> None:
    clock = Clock()
    state = _state(clock)
    state.breaker("d").adopt_open(80.0, "x")
    assert state.breakers["d"].current(clock.now, SETTINGS.breaker) == "half_open"
    assert news_of("d", state.breakers["d"], clock.now, 0.0, "a") is None


def test_the_coordinator_publishes_its_own_transitions_and_applies_only_the_others() -> None:
    a_clock, b_clock = Clock(), Clock()
    a, b = _state(a_clock), _state(b_clock)
    a_wire, b_wire = Wire("a", 0.0), Wire("b", 0.0)
    SharedRouting(a, a_wire)
    b_shared = SharedRouting(b, b_wire)
    for _ in range(2):
        changed = a.breaker("d").failure(a_clock.now, SETTINGS.breaker)
        if changed is not None:
            a.transitioned("d", changed, a_clock.now)
    assert [(k, o) for k, _, o in a_wire.sent] == [("d", True)]
    assert a.events.breaker_transitions == {("d", "open"): 1}
    message = a_wire.sent[0][1]
    b_shared.on_news(message)
    assert b.breakers["d"].state == "open" and b_shared.applied == 1
    assert b.events.breaker_transitions == {}  # counted where it happened, not again at every replica
    b_wire.origin = "a"  # a message of one's own origin is not applied again
    b.breakers.clear()
    b_shared.on_news(message)
    assert "d" not in b.breakers


def test_recent_samples_count_only_the_last_exchanges() -> None:
    state = _state(Clock())
    recent = RecentSamples(window=2)
    state.stats("d").record(None, 1.0, 0.5)
    assert recent.report(state.latency)["d"] == (None, 0, 1.0, 1)
    state.stats("d").record(0.2, 1.0, 0.5)
    assert recent.report(state.latency)["d"] == (0.2, 1, 1.0, 2)  # since the oldest kept exchange (empty)
    assert recent.report(state.latency)["d"] == (0.2, 1, 1.0, 1)  # the first sample fell out of the window
    assert recent.report(state.latency)["d"] == (0.2, 0, 1.0, 0)


def test_reports_round_trip_and_bad_rows_are_dropped() -> None:
    report = {"a": (0.1, 2, 0.5, 3), "b": (None, 0, 1.5, 1)}
    assert decode_report(encode_report(report, 12.5)) == (12.5, report)
    decoded = decode_report(b'{"at": 1, "d": {"ok": [null, 0, 1.0, 2], "bad": [1, -1, 1, 1], "short": [1]}}')
    assert decoded == (1.0, {"ok": (None, 0, 1.0, 2)})
    assert decode_report(b'{"d": {}}') is None


def test_combine_weights_by_recent_samples_and_falls_back_to_a_plain_mean() -> None:
    fleet = combine(
        {"d": (None, 0, 0.3, 4)}, [{"d": (0.1, 1, 1.0, 1)}, {"d": (0.3, 3, 2.0, 3)}, {"e": (None, 0, 4.0, 0)}]
    )
    d = fleet["d"]
    assert d.ttfb == pytest.approx(0.25) and d.ttfb_weight == 4  # (0.1*1 + 0.3*3) / 4
    assert d.total == pytest.approx(1.75) and d.total_weight == 4  # (1.0*1 + 2.0*3) / 4
    assert (d.local_ttfb_weight, d.local_total_weight) == (0, 4)
    assert fleet["e"].total == 4.0 and fleet["e"].total_weight == 0


def test_least_latency_blends_the_fleet_with_the_local_average() -> None:
    state = _state(Clock())
    x, y = (
        Candidate(Deployment("p", "openai", "x", "http://127.0.0.1:1/v1"), index=0),
        Candidate(Deployment("p", "openai", "y", "http://127.0.0.1:1/v1"), index=1),
    )
    state.stats(x.key).record(None, 1.0, 0.3)
    state.stats(y.key).record(None, 2.0, 0.3)
    assert order("least_latency", [x, y], state) == [x, y]
    # Others saw x at 4 s over 3 recent calls; this replica's 1 recent call at 1 s: (1*1 + 4*3) / 4 = 3.25.
    state.fleet_latency = {x.key: FleetLatency(total=4.0, total_weight=3, local_total_weight=1)}
    assert order("least_latency", [x, y], state) == [y, x]
    # Only idle reports (no recent samples): this replica's own measurement stands.
    state.fleet_latency = {x.key: FleetLatency(total=4.0, total_weight=0, local_total_weight=1)}
    assert order("least_latency", [x, y], state) == [x, y]
    # Not measured here: the fleet's average is used even without recent samples.
    z = Candidate(Deployment("p", "openai", "z", "http://127.0.0.1:1/v1"), index=2)
    state.fleet_latency = {z.key: FleetLatency(total=3.0)}
    assert order("least_latency", [z, y], state) == [y, z]
