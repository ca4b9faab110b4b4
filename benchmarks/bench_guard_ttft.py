#!/usr/bin/env python3
"""Streaming time to first token with the recommended guard set on, against the same gateway without guards.

Starts ../shared/bench/mock_upstream.py and two `tollgate serve` processes pointed at it (both pinned to CPU 0):
  plain   : zero-config (no guardrails)
  guarded : --config examples/guardrails.yaml (PII masking with reversible mode + injection blocking)
then drives streamed chat completions with ../shared/bench/loadgen.py (closed loop, one connection at a time
by default) carrying a ~2 KB prompt that holds personal data (so masking acts and the reversible restorer is
a stream filter: the guarded stream goes through canonical chunks instead of the byte relay). The two gateways
are measured alternately, `--rounds` times, and the time to first byte (= the first SSE event) is compared.

  python3 benchmarks/bench_guard_ttft.py                      # 3 rounds x 10 s per gateway, c=1
  python3 benchmarks/bench_guard_ttft.py --rounds 1 --duration 3   # quick check

The issue target: streaming TTFT within 5 ms of unguarded. Prints a markdown table; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED_BENCH = os.environ.get("SHARED_BENCH") or os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
MASTER_KEY = "sk-bench-ttft-0123456789"

# Operations prose around personal data: about 2 KB, like bench_pii's prompt.
PROMPT = (
    "Please draft a short reply to the customer below and keep the tone friendly. "
    "The customer, reachable at maria.keller@example.org or +44 20 7946 0958, wrote on Monday about the delayed "
    "delivery of order 44817-B. Our records show the parcel left the Rotterdam hub on the 14th and was scanned in "
    "Manchester two days later; the courier reports a failed delivery attempt because nobody answered the door. "
    "She asks whether we can redeliver on Saturday morning or leave it with a neighbour at number 12. "
) * 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def start_gateway(port: int, mock: int, data_dir: str, config: str | None) -> subprocess.Popen[bytes]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "AZURE_", "OLLAMA_"))
    }
    env.update(
        TOLLGATE_MASTER_KEY=MASTER_KEY,
        TOLLGATE_DATA_DIR=data_dir,
        OPENAI_API_KEY="sk-mock",
        OPENAI_BASE_URL=f"http://127.0.0.1:{mock}/v1",
        PYTHONPATH=os.path.join(ROOT, "src"),
    )
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "tollgate", "serve", "--port", str(port)]
    if config is not None:
        cmd += ["--config", config]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/health/ready")
    return proc


def drive(port: int, body_file: str, duration: float, concurrency: int) -> dict[str, object]:
    out = subprocess.run(
        [
            "taskset", "-c", "1", sys.executable, os.path.join(SHARED_BENCH, "loadgen.py"),
            "--url", f"http://127.0.0.1:{port}/v1/chat/completions",
            "--body-file", body_file,
            "-H", f"Authorization: Bearer {MASTER_KEY}",
            "-c", str(concurrency), "-d", str(duration), "--stream",
        ],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument(
        "--config",
        default=os.path.join(ROOT, "examples", "guardrails.yaml"),
        help="the guarded gateway's config file (default: examples/guardrails.yaml)",
    )
    args = ap.parse_args()

    mock_port, plain_port, guarded_port = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="tollgate-ttft-")
    body_file = os.path.join(tmp, "body.json")
    with open(body_file, "w") as f:
        json.dump(
            {
                "model": "openai/gpt-4o-mini",
                "stream": True,
                "messages": [
                    {"role": "system", "content": "You are a support agent."},
                    {"role": "user", "content": PROMPT},
                ],
            },
            f,
        )
    mock = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            os.path.join(SHARED_BENCH, "mock_upstream.py"),
            "--port",
            str(mock_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [mock]
    try:
        time.sleep(0.5)
        procs.append(start_gateway(plain_port, mock_port, os.path.join(tmp, "plain"), None))
        procs.append(start_gateway(guarded_port, mock_port, os.path.join(tmp, "guarded"), args.config))
        for port in (plain_port, guarded_port):
            drive(port, body_file, args.warmup, args.concurrency)
        rows: dict[str, list[dict[str, object]]] = {"plain": [], "guarded": []}
        for _ in range(args.rounds):
            for name, port in (("plain", plain_port), ("guarded", guarded_port)):
                rows[name].append(drive(port, body_file, args.duration, args.concurrency))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=15)

    def series(name: str, field: str) -> list[float]:
        return [float(r["ttfb_ms"][field]) for r in rows[name]]  # type: ignore[index]

    print(f"c={args.concurrency}, {args.rounds} rounds x {args.duration:.0f} s per gateway, ~{len(PROMPT)} B prompt\n")
    print("| gateway | requests | TTFB p50 ms (rounds) | TTFB p99 ms (rounds) | median TTFB p50 ms |")
    print("|---|---:|---|---|---:|")
    for name in ("plain", "guarded"):
        p50, p99 = series(name, "p50"), series(name, "p99")
        n = sum(int(r["requests_ok"]) for r in rows[name])
        errors = sum(int(r["errors"]) + int(r["timeouts"]) for r in rows[name])
        if errors:
            print(f"warning: {name}: {errors} failed requests", file=sys.stderr)
        print(
            f"| {name} | {n} | {' / '.join(f'{v:.2f}' for v in p50)} | {' / '.join(f'{v:.2f}' for v in p99)} "
            f"| {statistics.median(p50):.2f} |"
        )
    delta = [g - p for g, p in zip(series("guarded", "p50"), series("plain", "p50"), strict=True)]
    print(f"\nguarded - plain, TTFB p50 per round (ms): {' / '.join(f'{d:+.2f}' for d in delta)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
