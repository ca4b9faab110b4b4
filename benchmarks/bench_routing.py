#!/usr/bin/env python3
"""Micro-benchmark of the per-request routing decision with 50 deployments behind one logical model.

  python3 benchmarks/bench_routing.py            # every strategy, 20000 decisions each
  python3 benchmarks/bench_routing.py --n 100000 --deployments 50

One decision is what the dispatcher does around a successful first attempt: resolve the model, count the
request in the retry budget, order the candidates by the strategy, take the first (breaker check, in-flight
count), then record its success and latency and release it. Breakers are all closed and every deployment
has latency samples (the steady state). The issue's target: under 0.1 ms p50 with 50 deployments. Prints a
markdown table (microseconds).

The rows marked "+ rules" add what routing rules and data residency cost (the priority strategy, the same 50
deployments spread over three regions with tags, eight rules on headers, tags, caller metadata, teams, prompt
size and tools): building the request's facts and applying the rules, when no rule matches, when two match
(one restricts by tag, one retargets nothing), and when the request is pinned to a residency zone.
The rows "+ rules + budget" add a ninth rule, ``budget_remaining: {scope: team, below_usd: 50}`` -> cheap, for
a caller with a team and a key budget, read from the per-process level table: its level high (the rule does
not match), low (it matches and retargets), and unknown (never seen by this process).
The row "+ split" adds a sticky traffic split: the caller's arm from a hash of its user id, moved first.
The row "least_latency + fleet" has other replicas' averages for every deployment (routing.shared_state),
blended with the local ones by sample weight at each decision.
"""

from __future__ import annotations

import argparse
import random
import time

from tollgate.config.schema import TollgateConfig
from tollgate.context import Budget, Principal, RequestContext
from tollgate.core.snapshot import Snapshot
from tollgate.routing.budget_levels import BudgetLevels
from tollgate.routing.rules import RequestFacts
from tollgate.routing.split import arm_first, assign
from tollgate.routing.strategies import STRATEGIES, FleetLatency, RoutingState, order
from tollgate.types import JSONObject

REGIONS = ("us-east-1", "eu-west-1", "eu-central-1")
RULES = [
    {"name": "bulk", "match": {"headers": {"x-workload": "bulk"}}, "action": {"model": "cheap"}},
    {"name": "premium", "match": {"headers": {"x-user-tier": ["premium", "gold"]}}, "action": {"tags": ["gold"]}},
    {"name": "eu-header", "match": {"headers": {"x-region": "eu"}}, "action": {"residency": "eu"}},
    {"name": "batch-tag", "match": {"tags": {"workload": "batch"}}, "action": {"model": "cheap"}},
    {
        "name": "research",
        "match": {"teams": ["research"], "principal": {"project": "apollo"}},
        "action": {"regions": ["us-east-1"]},
    },
    {"name": "long", "match": {"min_prompt_tokens": 30_000}, "action": {"providers": ["openai"]}},
    {"name": "tools", "match": {"has_tools": True, "models": ["rules"]}, "action": {"tags": ["tools"]}},
    {"name": "acme", "match": {"orgs": ["acme"]}, "action": {"tags": ["gold"]}},
]


BUDGET_RULE = {
    "name": "team-budget-low",
    "match": {"budget_remaining": {"scope": "team", "below_usd": 50}},
    "action": {"model": "cheap"},
}


def config(deployments: int, extra_rules: tuple[JSONObject, ...] = ()) -> TollgateConfig:
    providers = {"openai": {"api_key": "sk-x", "base_url": "http://127.0.0.1:1/v1"}}
    models = {
        strategy: {
            "strategy": strategy,
            "deployments": [
                {"provider": "openai", "model": f"gpt-4o-mini-{i}", "weight": 1 + i % 5, "priority": i % 3}
                for i in range(deployments)
            ],
        }
        for strategy in STRATEGIES
    }
    models["rules"] = {
        "deployments": [
            {
                "provider": "openai",
                "model": f"gpt-4o-{i}",
                "priority": i % 3,
                "region": REGIONS[i % 3],
                "tags": ["gold", "tools"] if i % 2 else ["tools"],
            }
            for i in range(deployments)
        ]
    }
    models["cheap"] = {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}
    models["split"] = {
        "split": {"sticky": "user"},
        "deployments": [
            {"provider": "openai", "model": f"gpt-4.1-{i}", "weight": 1 + i % 5, "priority": i % 3}
            for i in range(deployments)
        ],
    }
    routing = {"rules": [*RULES, *extra_rules], "residency": {"zones": {"eu": ["eu-west-1", "eu-central-1"]}}}
    return TollgateConfig.model_validate({"providers": providers, "models": models, "routing": routing})


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


CASES: dict[str, tuple[dict[bytes, bytes], JSONObject | None]] = {
    "no rule matches": ({b"x-workload": b"interactive", b"authorization": b"Bearer k"}, {"user": "u1"}),
    "two rules match": ({b"x-user-tier": b"premium", b"authorization": b"Bearer k"}, None),
    "residency-pinned": ({b"x-tollgate-tags": b"data-residency=eu", b"authorization": b"Bearer k"}, None),
}
CALLER = Principal("k1", "app", "user", team_id="research", org_id="other", metadata={"project": "x"})
BODY: JSONObject = {"model": "rules", "messages": [{"role": "user", "content": "hi"}]}
BUDGETED = Principal(
    "k1",
    "app",
    "user",
    team_id="research",
    org_id="other",
    metadata={"project": "x"},
    budgets=(Budget("key", "k1", 100.0, "total"), Budget("team", "research", 500.0, "monthly")),
)
BUDGET_LEVELS: dict[str, int | None] = {"level high": 100_000_000, "level low": 480_000_000, "level unknown": None}
SPLIT_CTX = RequestContext(request_id="r", front_door="openai", endpoint="chat", config_version="v")
SPLIT_CTX.principal = CALLER
SPLIT_CTX.body = {"model": "split", "user": "end-user-42", "messages": [{"role": "user", "content": "hi"}]}


def bench(
    snapshot: Snapshot,
    model: str,
    n: int,
    case: tuple[dict[bytes, bytes], JSONObject | None] | None = None,
    caller: Principal = CALLER,
    levels: BudgetLevels | None = None,
    fleet: bool = False,
) -> tuple[float, float, float]:
    state = RoutingState(snapshot.routing, rng=random.Random(1))
    for i, cand in enumerate(snapshot.resolve(model).plan):
        state.stats(cand.key).record(0.2, 1.0, 0.3)
        if fleet:
            state.fleet_latency[cand.key] = FleetLatency(0.3, 12.0, 1.0 + i % 7 / 10, 12.0, 3.0, 3.0)
    settings = state.settings
    clock = state.clock
    samples: list[int] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        route = snapshot.resolve(model)
        if case is not None:
            facts = RequestFacts(case[0], caller, case[1], 120, False, BODY, levels)
            route = snapshot.rules.apply(route, facts)
        now = clock()
        state.budget.record_request(now, settings.budget)
        ordered = order(route.strategy, route.plan, state, prompt_tokens=500, output_tokens=256, stream=False)
        if route.split is not None:  # a traffic split: the caller's sticky arm goes first
            arm = assign(route.split, route.plan, SPLIT_CTX, state.rng)
            if arm is not None:
                ordered = arm_first(ordered, arm)
        first = ordered[0]
        if state.acquire(first, now) is None:
            state.breaker(first.key).success(clock(), settings.breaker)
            state.stats(first.key).record(None, 1.0, settings.latency_alpha)
            state.release(first)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return percentile(samples, 0.5), percentile(samples, 0.99), sum(samples) / len(samples) / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--deployments", type=int, default=50)
    args = parser.parse_args()
    snapshot = Snapshot(config(args.deployments), env={})
    print(f"| strategy ({args.deployments} deployments) | p50 µs | p99 µs | mean µs |")
    print("|---|---|---|---|")
    for strategy in STRATEGIES:
        p50, p99, mean = bench(snapshot, strategy, args.n)
        print(f"| {strategy} | {p50:.1f} | {p99:.1f} | {mean:.1f} |")
    p50, p99, mean = bench(snapshot, "least_latency", args.n, fleet=True)
    print(f"| least_latency + fleet (shared state) | {p50:.1f} | {p99:.1f} | {mean:.1f} |")
    p50, p99, mean = bench(snapshot, "split", args.n)
    print(f"| priority + split (sticky user) | {p50:.1f} | {p99:.1f} | {mean:.1f} |")
    for name, case in CASES.items():
        p50, p99, mean = bench(snapshot, "rules", args.n, case)
        print(f"| priority + rules: {name} | {p50:.1f} | {p99:.1f} | {mean:.1f} |")
    budgeted = Snapshot(config(args.deployments, (BUDGET_RULE,)), env={})
    for name, used in BUDGET_LEVELS.items():
        levels = BudgetLevels()
        if used is not None:
            levels.record("team", "research", "monthly", used, float("inf"))
            levels.record("key", "k1", "total", 1_000_000, float("inf"))
        case = CASES["no rule matches"]
        p50, p99, mean = bench(budgeted, "rules", args.n, case, BUDGETED, levels)
        print(f"| priority + rules + budget: {name} | {p50:.1f} | {p99:.1f} | {mean:.1f} |")


if __name__ == "__main__":
    main()
