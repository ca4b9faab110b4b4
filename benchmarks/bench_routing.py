#!/usr/bin/env python3
"""Micro-benchmark of the per-request routing decision with 50 deployments behind one logical model.

  python3 benchmarks/bench_routing.py            # every strategy, 20000 decisions each
  python3 benchmarks/bench_routing.py --n 100000 --deployments 50

One decision is what the dispatcher does around a successful first attempt: resolve the model, count the
request in the retry budget, order the candidates by the strategy, take the first (breaker check, in-flight
count), then record its success and latency and release it. Breakers are all closed and every deployment
has latency samples (the steady state). The issue's target: under 0.1 ms p50 with 50 deployments. Prints a
markdown table (microseconds).
"""

from __future__ import annotations

import argparse
import random
import time

from tollgate.config.schema import TollgateConfig
from tollgate.core.snapshot import Snapshot
from tollgate.routing.strategies import STRATEGIES, RoutingState, order


def config(deployments: int) -> TollgateConfig:
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
    return TollgateConfig.model_validate({"providers": providers, "models": models})


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def bench(snapshot: Snapshot, model: str, n: int) -> tuple[float, float, float]:
    state = RoutingState(snapshot.routing, rng=random.Random(1))
    for cand in snapshot.resolve(model).plan:
        state.stats(cand.key).record(0.2, 1.0, 0.3)
    settings = state.settings
    clock = state.clock
    samples: list[int] = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        route = snapshot.resolve(model)
        now = clock()
        state.budget.record_request(now, settings.budget)
        ordered = order(route.strategy, route.plan, state, prompt_tokens=500, output_tokens=256, stream=False)
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


if __name__ == "__main__":
    main()
