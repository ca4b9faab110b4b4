#!/usr/bin/env python3
"""What recording guardrail decisions costs: per request in INSPECT and FINALIZE, and the audit writer's rate.

  python3 benchmarks/bench_guardrail_audit.py              # 20 000 requests per row
  python3 benchmarks/bench_guardrail_audit.py --n 5000

Rows (p50/p99 µs per request, after a 10 % warm-up):

- the default guard set (PII masking, every type, then injection) in INSPECT on bench_pii's 2 KB prompt with
  PII (two decisions: the payload hash is computed once per guard that acts) and without (no decision);
- FINALIZE of a request with two decisions (PII mask of EMAIL and PHONE): the metrics recorder alone, and the
  recorder plus the audit policy (building two audit records and queueing them); and of a request without any
  decision (what every request pays for the feature: a loop over an empty list and a length check);
- the audit writer draining 20 000 queued records into a SQLite file (the default database), in batches of 200
  per transaction: records per second.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pii import prompt

from tollgate.config.guardrails import InjectionGuardConfig, PIIGuardConfig
from tollgate.context import GuardrailDecision, Principal, RequestContext
from tollgate.observability.metrics import GatewayMetrics
from tollgate.observability.recorder import MetricsRecorder
from tollgate.policies.guardrail_audit import GuardrailAuditPolicy
from tollgate.policies.injection import InjectionPolicy
from tollgate.policies.pii import PIIPolicy
from tollgate.state.audit import MemoryAuditStore
from tollgate.state.factory import open_storage
from tollgate.types import JSONObject

PRINCIPAL = Principal(key_id="key_1", name="svc", role="user", team_id="payments", org_id="acme")
DECISIONS = (
    GuardrailDecision("pii", "mask", "input", ("EMAIL",), 2, "ab" * 32),
    GuardrailDecision("pii", "mask", "input", ("PHONE",), 1, "ab" * 32),
)


def _ctx(i: int, decisions: tuple[GuardrailDecision, ...] = ()) -> RequestContext:
    ctx = RequestContext(request_id=f"req_{i}", front_door="openai", endpoint="chat", config_version="v1")
    ctx.principal, ctx.requested_model = PRINCIPAL, "gpt-4o-mini"
    ctx.guardrail_decisions.extend(decisions)
    return ctx


def _stats(samples: list[int], n: int) -> tuple[float, float]:
    kept = sorted(samples[n // 10 :])
    return statistics.median(kept) / 1000.0, kept[int(0.99 * len(kept))] / 1000.0


async def inspect(body: JSONObject, n: int) -> tuple[float, float, int]:
    pii, injection = PIIPolicy(PIIGuardConfig(enabled=True)), InjectionPolicy(InjectionGuardConfig(enabled=True))
    samples: list[int] = []
    decisions = 0
    for i in range(n + n // 10):
        ctx = _ctx(i)
        t0 = time.perf_counter_ns()
        b = await pii.inspect(ctx, body)
        await injection.inspect(ctx, b)
        samples.append(time.perf_counter_ns() - t0)
        pii.on_finalize(ctx)
        decisions = len(ctx.guardrail_decisions)
    return *_stats(samples, n), decisions


def finalize(
    policies: list[Callable[[RequestContext], None]], decisions: tuple[GuardrailDecision, ...], n: int
) -> tuple[float, float]:
    samples: list[int] = []
    for i in range(n + n // 10):
        ctx = _ctx(i, decisions)
        t0 = time.perf_counter_ns()
        for on_finalize in policies:
            on_finalize(ctx)
        samples.append(time.perf_counter_ns() - t0)
    return _stats(samples, n)


async def writer_rate(records: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/bench.db")
        audit = GuardrailAuditPolicy(storage.audit, max_queue=records)
        for i in range(records // len(DECISIONS)):
            audit.on_finalize(_ctx(i, DECISIONS))
        t0 = time.perf_counter()
        await audit.flush()
        elapsed = time.perf_counter() - t0
        assert audit.written == records, audit.written
        await storage.close()
    return records / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="measured requests per row")
    args = parser.parse_args()
    n = args.n
    rows: list[tuple[str, str, str]] = []
    for label, body in (("2 KB with PII", prompt(True)), ("2 KB without PII", prompt(False))):
        p50, p99, made = await inspect(body, n)
        rows.append((f"INSPECT, default guard set, {label} ({made} decisions)", f"{p50:.1f}", f"{p99:.1f}"))
    recorder = MetricsRecorder(GatewayMetrics(), config_version="v1")
    audit = GuardrailAuditPolicy(MemoryAuditStore(), max_queue=10 * n)
    for label, policies, decisions in (
        ("FINALIZE, metrics recorder, 2 decisions", [recorder.on_finalize], DECISIONS),
        ("FINALIZE, recorder + audit policy, 2 decisions", [recorder.on_finalize, audit.on_finalize], DECISIONS),
        ("FINALIZE, recorder + audit policy, no decision", [recorder.on_finalize, audit.on_finalize], ()),
    ):
        p50, p99 = finalize(policies, decisions, n)
        rows.append((label, f"{p50:.1f}", f"{p99:.1f}"))
    rate = await writer_rate(n)
    print("| what | p50 µs | p99 µs |")
    print("|---|---:|---:|")
    for label, p50, p99 in rows:
        print(f"| {label} | {p50} | {p99} |")
    print(f"\naudit writer into SQLite, batches of 200: {rate:,.0f} records/s ({n:,} records)")


if __name__ == "__main__":
    asyncio.run(main())
