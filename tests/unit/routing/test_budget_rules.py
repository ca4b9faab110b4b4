"""The ``budget_remaining`` rule condition: compiled from real config, read from a budget-level table.

The table is the real ``BudgetLevels`` with a test clock, filled by hand (the "level source") or by the real
``BudgetPolicy`` reserving and settling on an in-memory counter store.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tollgate.config.budgets import BudgetSettings
from tollgate.config.loader import ConfigError, parse_config
from tollgate.config.pricing import ModelPriceConfig, PricingConfig
from tollgate.context import Budget, Principal, RequestContext
from tollgate.core.snapshot import Snapshot
from tollgate.errors import BudgetExceededError
from tollgate.policies.budget import BudgetPolicy, period_of
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment
from tollgate.routing.budget_levels import BudgetLevels
from tollgate.routing.resolver import Route
from tollgate.routing.rules import RequestFacts
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.wire.openai import Usage

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC).timestamp()
MONTH_END = period_of("monthly", NOW)[2]
DAY_END = period_of("daily", NOW)[2]

CONFIG = """
providers:
  openai: {api_key: sk-o, base_url: 'http://127.0.0.1:1/v1'}
models:
  smart:
    deployments: [{provider: openai, model: gpt-4o}]
  cheap:
    deployments: [{provider: openai, model: gpt-4o-mini}]
routing:
  rules:
"""
TEAM = Budget("team", "t1", 100.0, "monthly")


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(rules: str) -> Snapshot:
    return Snapshot(parse_config(CONFIG + rules, "<test>", {}), env={})


def caller(*budgets: Budget) -> Principal:
    return Principal(key_id="k1", name="svc", role="user", team_id="t1", org_id="o1", budgets=budgets)


def facts(levels: BudgetLevels | None, principal: Principal | None) -> RequestFacts:
    return RequestFacts({}, principal, None, 10, False, None, levels)


def target(snap: Snapshot, f: RequestFacts, model: str = "smart") -> str:
    route = snap.rules.apply(snap.resolve(model), f)
    return route.plan[0].key


LOW_USD = "    - {name: low, match: {budget_remaining: {scope: team, below_usd: 10}}, action: {model: cheap}}\n"


def test_below_usd_switches_once_the_level_crosses_the_threshold() -> None:
    snap = snapshot(LOW_USD)
    levels = BudgetLevels(Clock())
    f = facts(levels, caller(TEAM))
    levels.record("team", "t1", "monthly", 50_000_000, MONTH_END)  # $50 of $100 spent: $50 left
    assert target(snap, f) == "openai/gpt-4o"
    levels.record("team", "t1", "monthly", 90_000_000, MONTH_END)  # exactly $10 left: not below
    assert target(snap, f) == "openai/gpt-4o"
    levels.record("team", "t1", "monthly", 90_000_001, MONTH_END)
    assert target(snap, f) == "openai/gpt-4o-mini"
    levels.settle("team", "t1", "monthly", -5_000_000)  # a refund brings it back above
    assert target(snap, f) == "openai/gpt-4o"
    # Another team's level, or the same team's daily budget, says nothing about this monthly budget.
    levels.record("team", "t2", "monthly", 99_000_000, MONTH_END)
    levels.record("team", "t1", "daily", 99_000_000, DAY_END)
    assert target(snap, f) == "openai/gpt-4o"


def test_below_fraction_and_any_budget_of_the_scope_counts() -> None:
    rule = "    - {name: low, match: {budget_remaining: {scope: team, below_fraction: 0.1}}, action: {model: cheap}}\n"
    snap = snapshot(rule)
    levels = BudgetLevels(Clock())
    daily = Budget("team", "t1", 10.0, "daily")
    f = facts(levels, caller(TEAM, daily, Budget("key", "k1", 1.0, "total")))
    levels.record("team", "t1", "monthly", 89_000_000, MONTH_END)  # 11 % left
    levels.record("team", "t1", "daily", 1_000_000, DAY_END)
    assert target(snap, f) == "openai/gpt-4o"
    levels.record("team", "t1", "daily", 9_500_000, DAY_END)  # 5 % of the daily budget left
    assert target(snap, f) == "openai/gpt-4o-mini"
    levels.record("team", "t1", "daily", 0, DAY_END)
    levels.record("team", "t1", "monthly", 95_000_000, MONTH_END)
    assert target(snap, f) == "openai/gpt-4o-mini"


def test_unknown_levels_follow_if_unknown_and_never_crash() -> None:
    snap = snapshot(LOW_USD)
    clock = Clock()
    levels = BudgetLevels(clock)
    # No level table, no caller, no budget of the scope, no level seen yet: the rule does not match.
    assert target(snap, facts(None, caller(TEAM))) == "openai/gpt-4o"
    assert target(snap, facts(levels, None)) == "openai/gpt-4o"
    assert target(snap, facts(levels, caller(Budget("org", "o1", 1.0)))) == "openai/gpt-4o"
    assert target(snap, facts(levels, caller(TEAM))) == "openai/gpt-4o"
    # A level of a period that is over is unknown too (the new period's counter starts over).
    levels.record("team", "t1", "monthly", 99_000_000, MONTH_END)
    assert target(snap, facts(levels, caller(TEAM))) == "openai/gpt-4o-mini"
    clock.now = MONTH_END + 1
    assert levels.level("team", "t1", "monthly") is None
    assert target(snap, facts(levels, caller(TEAM))) == "openai/gpt-4o"
    # if_unknown: true matches when nothing is known.
    cautious = snapshot(
        "    - name: low\n      match: {budget_remaining: {scope: team, below_usd: 10, if_unknown: true}}\n"
        "      action: {model: cheap}\n"
    )
    assert target(cautious, facts(levels, caller(TEAM))) == "openai/gpt-4o-mini"
    assert target(cautious, facts(levels, None)) == "openai/gpt-4o-mini"


def test_explain_reports_what_the_condition_saw() -> None:
    snap = snapshot(LOW_USD)
    clock = Clock()
    levels = BudgetLevels(clock)
    f = facts(levels, caller(TEAM))
    [entry] = snap.rules.trace("smart", f)
    assert isinstance(entry, dict)
    assert entry["matched"] is False
    assert entry["why"] == "does not hold: team budget remaining below $10.00"
    [observed] = entry["observed"]  # type: ignore[misc]
    assert observed["holds"] is False and observed["unknown"] is True
    assert observed["budgets"][0]["remaining_usd"] is None
    levels.record("team", "t1", "monthly", 95_000_000, MONTH_END)
    clock.now += 2.5
    [entry] = snap.rules.trace("smart", f)
    assert isinstance(entry, dict)
    assert entry["matched"] is True
    [observed] = entry["observed"]  # type: ignore[misc]
    assert observed == {
        "condition": "team budget remaining below $10.00",
        "holds": True,
        "budgets": [
            {"period": "monthly", "limit_usd": 100.0, "remaining_usd": 5.0, "seen_seconds_ago": 2.5, "below": True}
        ],
    }


def test_the_table_is_bounded() -> None:
    levels = BudgetLevels(Clock(), max_entries=3)
    for i in range(3):
        levels.record("key", f"k{i}", "total", i, float("inf"))
    assert len(levels) == 3
    levels.record("key", "k0", "total", 7, float("inf"))  # known: replaced in place
    assert len(levels) == 3
    levels.record("key", "k9", "total", 1, float("inf"))  # one too many: starts over
    assert len(levels) == 1 and levels.level("key", "k0", "total") is None


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("{scope: team}", "exactly one of below_usd, below_fraction"),
        ("{scope: team, below_usd: 1, below_fraction: 0.5}", "exactly one of below_usd, below_fraction"),
        ("{scope: galaxy, below_usd: 1}", "budget_remaining.scope"),
        ("{scope: team, below_fraction: 2}", "below_fraction"),
        ("{scope: team, below_usd: -1}", "below_usd"),
    ],
)
def test_bad_budget_conditions_are_config_errors(condition: str, problem: str) -> None:
    rule = f"    - {{name: low, match: {{budget_remaining: {condition}}}, action: {{model: cheap}}}}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG + rule, "<test>", {})
    assert problem in str(info.value)


# The budget policy is the writer: what a reservation reports, a settlement refunds and a refusal sees.

DEP = Deployment("p", "openai", "m", "http://x")
PRICES = PriceBook(PricingConfig(models={"p/m": ModelPriceConfig(input=1, output=10)}))
ROUTE = Route(requested="m", candidates=(DEP,), logical=True)


def ctx_for(principal: Principal, max_output: int) -> RequestContext:
    ctx = RequestContext(request_id="req", front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal = principal
    ctx.estimated_prompt_tokens = 100
    ctx.max_output_tokens = max_output
    return ctx


async def test_the_budget_policy_records_levels_on_reserve_settle_and_refusal() -> None:
    clock = Clock()
    levels = BudgetLevels(clock)
    team = Budget("team", "t1", 1.0, "monthly")
    key = Budget("key", "k1", 5.0, "total")
    policy = BudgetPolicy(MemoryCounterStore(), PRICES, BudgetSettings(), clock=clock, levels=levels)
    await policy.start()
    try:
        principal = caller(team, key)
        ctx = ctx_for(principal, max_output=1000)
        await policy.admit(ctx, ROUTE)
        worst = 100 * 1 + 1000 * 10  # micro-dollars
        seen = levels.level("team", "t1", "monthly")
        assert seen is not None and seen.used == worst and seen.until == MONTH_END
        total = levels.level("key", "k1", "total")
        assert total is not None and total.used == worst
        ctx.deployment, ctx.usage, ctx.cost_usd = DEP, Usage(100, 20), 0.000300
        policy.on_finalize(ctx)  # settled to $0.0003: the refund shows at once
        assert seen.used == 300 and total.used == 300
        await policy.flush()
        # The rule reads what the policy left: $0.9997 of $1 is left, not below $0.50.
        snap = snapshot(
            "    - {name: low, match: {budget_remaining: {scope: team, below_usd: 0.5}}, action: {model: cheap}}\n"
        )
        assert target(snap, facts(levels, principal)) == "openai/gpt-4o"
        big = ctx_for(principal, max_output=60_000)  # reserves $0.6001: $0.3996 left
        await policy.admit(big, ROUTE)
        assert target(snap, facts(levels, principal)) == "openai/gpt-4o-mini"
        with pytest.raises(BudgetExceededError):  # refused: the level it was refused at is recorded
            await policy.admit(ctx_for(principal, max_output=60_000), ROUTE)
        assert levels.level("team", "t1", "monthly") is not None
        assert levels.level("team", "t1", "monthly").used == 300 + 600_100  # type: ignore[union-attr]
    finally:
        await policy.stop()
