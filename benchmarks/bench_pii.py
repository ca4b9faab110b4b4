#!/usr/bin/env python3
"""The PII request policy (INSPECT) on a 2 KB prompt: p50/p99 µs per request, by prompt and guard set.

  python3 benchmarks/bench_pii.py                 # 20 000 requests per row
  python3 benchmarks/bench_pii.py --n 5000
  python3 benchmarks/bench_pii.py --ner           # names and locations too (needs the ner extra)

Rows: a 2 KB chat prompt (system + user + a tool call and its result) with no PII, the same with eight
values of different types (emails, phone, card, IBAN, IP, key, password), and the detector alone on the
same text. The guard set is every entity type with the default action (mask); "no phones" drops the
one detector that calls a parser (phonenumbers) per candidate. The issue's target: under 1 ms p50 for
2 KB with the default guard set. Prints a markdown table.

With ``--ner``, rows with the spaCy NER model (guardrails.pii.ner) follow: the policy with its result cache
off (every prompt new to the model), with the cache on (the same prompt again: chat history), the model
alone on the user text (ner component only, and the full pipeline for comparison), and the process RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from tollgate.config.guardrails import NERConfig, PIIGuardConfig
from tollgate.context import RequestContext
from tollgate.policies.pii import PIIPolicy
from tollgate.types import JSONObject

FILLER = (
    "We are migrating the billing service to the new cluster next week. The plan is to drain traffic from "
    "the old nodes, run the schema migration 42 (version 3.11.4 of the tool), and verify the dashboards for "
    "latency and error rates. Order 48213975 from 2024-03-15 failed at $1,299.00 because of a timeout. "
)
PII = (
    "Contact ann.lee@example.com or +44 20 7946 0958; card 4111 1111 1111 1111; IBAN DE89 3704 0044 0532 0130 00; "
    "host 10.20.30.40; key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789; password=Tr0ub4dor&3; cc bob@example.org. "
)


def prompt(with_pii: bool, size: int = 2048) -> JSONObject:
    head = PII if with_pii else ""
    user = head + FILLER * (size // len(FILLER) + 1)
    body = _body("")
    user = user[: size - text_size(body)]  # every text the provider sees adds up to ``size`` characters
    return _body(user)


def _body(user: str) -> JSONObject:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a careful assistant for the operations team. Answer briefly."},
            {"role": "user", "content": user},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order": "48213975", "verbose": true}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "status=failed reason=upstream timeout after 30s"},
        ],
    }


def text_size(body: JSONObject) -> int:
    total = 0
    for msg in body["messages"]:  # type: ignore[union-attr]
        if isinstance(msg, dict):
            content = msg.get("content")
            total += len(content) if isinstance(content, str) else 0
    return total


async def measure(policy: PIIPolicy, body: JSONObject, n: int) -> tuple[float, float]:
    samples: list[int] = []
    for i in range(n + n // 10):
        ctx = RequestContext(request_id=str(i), front_door="openai", endpoint="chat", config_version="v1")
        t0 = time.perf_counter_ns()
        await policy.inspect(ctx, body)
        policy.on_finalize(ctx)
        samples.append(time.perf_counter_ns() - t0)
    samples = sorted(samples[n // 10 :])
    return statistics.median(samples) / 1000.0, samples[int(0.99 * len(samples))] / 1000.0


def measure_detector(policy: PIIPolicy, text: str, n: int) -> tuple[float, float]:
    samples: list[int] = []
    find = policy.detector.find
    for _ in range(n):
        t0 = time.perf_counter_ns()
        find(text)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return statistics.median(samples) / 1000.0, samples[int(0.99 * len(samples))] / 1000.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_call(call: Callable[[], Any], n: int) -> tuple[float, float]:
    samples: list[int] = []
    for _ in range(n + n // 10):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    samples = sorted(samples[n // 10 :])
    return statistics.median(samples) / 1000.0, samples[int(0.99 * len(samples))] / 1000.0


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t0 - 0.001) * 1000)


async def loop_lag(policy: PIIPolicy, n: int) -> tuple[float, float]:
    """How late a 1 ms timer fires while ``n`` requests go through the NER policy: whether other requests
    on the same event loop would still be served."""
    stop, lags = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, lags))
    body = prompt(False)
    for i in range(n):
        ctx = RequestContext(request_id=str(i), front_door="openai", endpoint="chat", config_version="v1")
        await policy.inspect(ctx, body)
    stop.set()
    await ticker
    lags.sort()
    return lags[len(lags) // 2], lags[-1]


async def ner_rows(n: int) -> list[tuple[str, str, int, float, float]]:
    before = rss_mb()
    t0 = time.perf_counter()
    ner_on = PIIPolicy(PIIGuardConfig(enabled=True, ner=NERConfig(enabled=True, cache_entries=0)))
    load = time.perf_counter() - t0
    after = rss_mb()
    cached = PIIPolicy(PIIGuardConfig(enabled=True, ner=NERConfig(enabled=True)), ner=None)
    assert ner_on.ner is not None and cached.ner is not None
    rows: list[tuple[str, str, int, float, float]] = []
    for label, with_pii in (("2 KB, no PII", False), ("2 KB, 8 values", True)):
        body = prompt(with_pii)
        size = text_size(body)
        rows.append(("all types + NER, no result cache", label, size, *await measure(ner_on, body, n)))
        rows.append(("all types + NER, same prompt again (cached)", label, size, *await measure(cached, body, n)))
    user = prompt(False)["messages"][1]["content"]  # type: ignore[index,call-overload]
    assert isinstance(user, str)
    nlp = ner_on.ner.nlp
    rows.append(("spaCy ner component alone, inline", "2 KB, no PII", len(user), *measure_call(lambda: nlp(user), n)))
    import spacy

    full = spacy.load(ner_on.config.ner.model)
    rows.append(
        ("spaCy full pipeline (tagger, parser, …)", "2 KB, no PII", len(user), *measure_call(lambda: full(user), n))
    )
    print(f"NER: import + load {load:.2f} s; RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f})")
    # Called inline, the model would stall the loop for a whole call (the "alone, inline" row below).
    lag_p50, lag_max = await loop_lag(ner_on, max(10, n // 10))
    print(f"event-loop stall while requests go through NER (worker thread): p50 {lag_p50:.2f} ms, max {lag_max:.1f} ms")
    await ner_on.close()
    await cached.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="measured requests per row")
    parser.add_argument("--ner", action="store_true", help="add the NER rows (needs the ner extra)")
    parser.add_argument("--ner-n", type=int, default=300, help="measured requests per NER row")
    args = parser.parse_args()
    default = PIIPolicy(PIIGuardConfig(enabled=True))
    no_phone = PIIPolicy(PIIGuardConfig(enabled=True, actions={"PHONE": "allow"}))
    reversible = PIIPolicy(PIIGuardConfig(enabled=True, reversible=True))
    rows: list[tuple[str, str, int, float, float]] = []
    for label, with_pii in (("2 KB, no PII", False), ("2 KB, 8 values", True)):
        body = prompt(with_pii)
        size = text_size(body)
        rows.append(("all types (default)", label, size, *await measure(default, body, args.n)))
        rows.append(("all types, reversible", label, size, *await measure(reversible, body, args.n)))
        rows.append(("all types but PHONE", label, size, *await measure(no_phone, body, args.n)))
        user = body["messages"][1]["content"]  # type: ignore[index,call-overload]
        assert isinstance(user, str)
        rows.append(("detector only, user text", label, len(user), *measure_detector(default, user, args.n)))
    if args.ner:
        rows += await ner_rows(args.ner_n)
    print("| guard set | prompt | text chars | p50 µs | p99 µs |")
    print("|---|---|---:|---:|---:|")
    for guard, label, size, p50, p99 in rows:
        print(f"| {guard} | {label} | {size} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
