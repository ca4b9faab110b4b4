#!/usr/bin/env python3
"""The output guards on a 2 KB answer: the content filter (non-streamed, and streamed in small chunks) and the
JSON-schema validation of a structured answer, and the filter on a tool call whose arguments are 2 KB of JSON
(whole, and streamed in argument deltas). p50/p99 µs.

  python3 benchmarks/bench_output_guards.py            # 2 000 answers per row
  python3 benchmarks/bench_output_guards.py --n 500

The filter has 60 words and phrases in two categories (mask) and two bounded patterns (block), none of which
occurs in the answer (the common case: everything is scanned, nothing is changed). The streamed rows feed the
answer as OpenAI chunks of 4 characters (about one token each) through a fresh filter per answer and report the
time per answer and per chunk. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from tollgate.config.guardrails import OutputFilterConfig, OutputSchemaConfig
from tollgate.context import RequestContext
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.policies.output_schema import OutputSchemaPolicy
from tollgate.types import JSONObject

ANSWER = (
    "To rotate the database credentials, open the operations console, pick the cluster, and start a rotation. "
    "The new password is written to the vault and the application pods restart one at a time, so the service "
    "stays available. Check the dashboard for errors during the next ten minutes; if any appear, roll back. "
) * 7
ANSWER = ANSWER[:2048]
FILTER = OutputFilterConfig.model_validate(
    {
        "enabled": True,
        "categories": {
            "profanity": {"words": [f"badword{i}" for i in range(40)], "action": "mask"},
            "projects": {"words": [f"Project Code{i}" for i in range(20)], "action": "mask"},
            "ids": {"patterns": [r"INC-\d{4,6}", r"sk-[A-Za-z0-9]{20,48}"], "action": "block"},
        },
    }
)
SCHEMA: JSONObject = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "text": {"type": "string"}},
                "required": ["n", "text"],
            },
        },
        "summary": {"type": "string"},
    },
    "required": ["steps", "summary"],
}
STRUCTURED = (
    '{"steps": ['
    + ",".join(f'{{"n": {i}, "text": "Open the console and check cluster {i} for errors."}}' for i in range(30))
    + '], "summary": "Rotate, watch, roll back if needed."}'
)


def _ctx(stream: bool, body: JSONObject | None = None) -> RequestContext:
    ctx = RequestContext("bench", "openai", "chat", "v1", stream=stream)
    ctx.body = body
    return ctx


def _completion(text: str) -> JSONObject:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def _time(call: Callable[[], None], n: int) -> list[float]:
    for _ in range(max(50, n // 10)):
        call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        out.append((time.perf_counter() - t) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    policy = OutputFilterPolicy(FILTER)
    completion = _completion(ANSWER)
    pieces = [ANSWER[i : i + 4] for i in range(0, len(ANSWER), 4)]
    chunks: list[JSONObject] = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})

    def streamed() -> None:
        flt = policy.stream_filter(_ctx(True))
        assert flt is not None
        for c in chunks:
            flt.feed([c])
        flt.flush()

    # A tool call whose arguments are the 2 KB structured JSON: whole, and streamed in deltas of 4 characters.
    def call(args: str) -> JSONObject:
        return {"index": 0, "id": "call_1", "type": "function", "function": {"name": "plan", "arguments": args}}

    with_call: JSONObject = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call(STRUCTURED)]},
                "finish_reason": "tool_calls",
            }
        ]
    }
    arg_chunks: list[JSONObject] = [{"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [call("")]}}]}]
    arg_chunks += [
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}}]}
        for a in (STRUCTURED[i : i + 4] for i in range(0, len(STRUCTURED), 4))
    ]
    arg_chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})

    def args_whole() -> None:
        policy.respond(_ctx(False), with_call)

    def args_streamed() -> None:
        flt = policy.stream_filter(_ctx(True))
        assert flt is not None
        for c in arg_chunks:
            flt.feed([c])
        flt.flush()

    schema = OutputSchemaPolicy(OutputSchemaConfig(enabled=True))
    body: JSONObject = {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}}
    structured = _completion(STRUCTURED)

    def whole() -> None:
        policy.respond(_ctx(False), completion)

    def validated() -> None:
        schema.respond(_ctx(False, body), structured)

    rows = [
        ("output filter, non-streamed", f"{len(ANSWER)} chars", _time(whole, n)),
        ("output filter, streamed", f"{len(chunks)} chunks", _time(streamed, n)),
        ("output schema, non-streamed", f"{len(STRUCTURED)} chars JSON", _time(validated, n)),
        ("output filter, tool-call arguments", f"{len(STRUCTURED)} chars JSON", _time(args_whole, n)),
        ("output filter, streamed tool-call arguments", f"{len(arg_chunks)} chunks", _time(args_streamed, n)),
    ]
    print(f"hold-back: {policy.matcher.hold} characters")
    print("| guard | answer | p50 µs | p99 µs |")
    print("|---|---|---:|---:|")
    for name, size, samples in rows:
        q = statistics.quantiles(samples, n=100)
        print(f"| {name} | {size} | {statistics.median(samples):.0f} | {q[98]:.0f} |")
    per_chunk = statistics.median(rows[1][2]) / len(chunks)
    print(f"\nstreamed: {per_chunk:.1f} µs per chunk (median answer / chunks)")
    per_delta = statistics.median(rows[4][2]) / len(arg_chunks)
    print(f"streamed tool-call arguments: {per_delta:.1f} µs per chunk (median answer / chunks)")


if __name__ == "__main__":
    main()
