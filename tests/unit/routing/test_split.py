"""Traffic split: arms by weight, a stable point per caller, stickiness, who the caller is."""

from __future__ import annotations

import random

from tollgate.context import Principal, RequestContext
from tollgate.providers.base import Deployment
from tollgate.routing.split import Split, arm_first, arms, assign, caller_id, choose, point
from tollgate.routing.strategies import Candidate


def _cand(name: str, index: int, weight: float = 1.0, priority: int = 0) -> Candidate:
    return Candidate(Deployment(name, "openai", "m", "http://x/v1"), index, weight=weight, priority=priority)


def _ctx(user: str | None = None, key: str = "k1", principal_user: str | None = None) -> RequestContext:
    ctx = RequestContext(request_id="r", front_door="openai", endpoint="chat", config_version="v")
    ctx.principal = Principal(key_id=key, name=key, role="user", user_id=principal_user)
    ctx.body = {"model": "m", "messages": []} | ({"user": user} if user else {})
    return ctx


def test_choose_splits_the_unit_interval_by_cumulative_weight_in_config_order() -> None:
    a, b, c = _cand("a", 0, 2), _cand("b", 1, 1), _cand("c", 2, 1)
    assert [choose([a, b, c], at).key for at in (0.0, 0.49, 0.5, 0.74, 0.75, 0.999999)] == [
        "a/m",
        "a/m",
        "b/m",
        "b/m",
        "c/m",
        "c/m",
    ]


def test_shares_of_many_callers_follow_the_weights() -> None:
    plan = [_cand("a", 0, 90), _cand("b", 1, 10)]
    split = Split("user", "smart")
    rng = random.Random(1)
    picks = [assign(split, plan, _ctx(user=f"user-{i}"), rng) for i in range(20_000)]
    share_b = sum(1 for p in picks if p is not None and p.key == "b/m") / len(picks)
    assert 0.09 < share_b < 0.11


def test_a_sticky_caller_keeps_its_arm_across_processes_and_draws() -> None:
    plan = [_cand("a", 0), _cand("b", 1)]
    split = Split("user", "smart")
    for i in range(200):
        ctx = _ctx(user=f"u{i}")
        first = assign(split, plan, ctx, random.Random(0))
        # Other RNG states, other RoutingStates: the point is a hash, not a draw.
        assert all(assign(split, plan, ctx, random.Random(seed)) is first for seed in range(1, 6))


def test_changing_a_weight_moves_only_the_callers_across_the_boundary() -> None:
    before = [_cand("a", 0, 50), _cand("b", 1, 50)]
    after = [_cand("a", 0, 60), _cand("b", 1, 40)]
    split = Split("user", "smart")
    moved = kept_a = 0
    for i in range(5_000):
        ctx = _ctx(user=f"u{i}")
        old = assign(split, before, ctx, random.Random())
        new = assign(split, after, ctx, random.Random())
        assert old is not None and new is not None
        if old.key == "a/m":
            assert new.key == "a/m"  # growing a's share never moves a's callers
            kept_a += 1
        elif new.key != old.key:
            moved += 1
    assert 0.07 < moved / 5_000 < 0.13 and kept_a > 2_000  # about a tenth of all callers moved


def test_the_salt_decorrelates_splits_of_different_models() -> None:
    same = sum(1 for i in range(2_000) if (point("smart", f"u:{i}") < 0.5) == (point("fast", f"u:{i}") < 0.5))
    assert 850 < same < 1150


def test_without_stickiness_each_request_draws() -> None:
    plan = [_cand("a", 0), _cand("b", 1)]
    rng = random.Random(7)
    picks = {assign(Split("none"), plan, _ctx(user="same"), rng).key for _ in range(50)}  # type: ignore[union-attr]
    assert picks == {"a/m", "b/m"}


def test_the_caller_is_the_end_user_then_the_callers_user_then_its_key() -> None:
    assert caller_id(_ctx(user="alice", principal_user="p1"), "user") == "u:alice"
    anthropic = _ctx(principal_user="p1")
    anthropic.metadata = {"user_id": "bob"}
    assert caller_id(anthropic, "user") == "u:bob"
    assert caller_id(_ctx(principal_user="p1"), "user") == "u:p1"
    assert caller_id(_ctx(), "user") == "k:k1"
    assert caller_id(_ctx(user="alice"), "key") == "k:k1"
    assert caller_id(_ctx(user="alice"), "none") is None


def test_arms_are_the_first_tier_and_the_arm_goes_first() -> None:
    a, b, c = _cand("a", 0), _cand("b", 1), _cand("c", 2, priority=1)
    assert arms([a, b, c]) == [a, b]
    assert arm_first([a, b, c], b) == [b, a, c]
    assert arm_first([a, b, c], a) == [a, b, c]
    assert assign(Split("key"), [], _ctx(), random.Random()) is None
