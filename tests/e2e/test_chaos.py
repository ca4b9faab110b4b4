"""Chaos: a mixed load through the official openai SDK while one of a group's two providers is killed and restarted.

Provider A is a fake OpenAI in its own process, killed with SIGKILL mid-run (its sockets reset, new
connections are refused) and started again on the same port; provider B is a fake in this process. The
gateway routes the group ``duo`` with ``weighted`` (half the requests try A first). What a client may
see, by design: a stream that was already streaming from A when A died is cut (the gateway never retries
after the first byte; the client gets a terminal error event). Everything else must succeed: non-streaming
requests and streams not yet started fall back to B before the first byte. The test prints the success
rate and the latency by phase; docs/routing.md (Chaos test) records a run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, free_port, serve
from tests.gateway import RunningGateway, run_gateway

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini-scenario-slow_stream"  # streams pause 50 ms between chunks: some are in flight at the kill
WORKERS = 8
WARMUP, BASELINE, OUTAGE, RECOVERY = 1.5, 3.0, 3.0, 4.0  # seconds of each phase (warm-up: not in the figures)


class ProcessFake:
    """A fake OpenAI in a subprocess on a fixed port, so it can be killed and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        code = (
            "from aiohttp import web; from tests.fakes import openai_server; "
            f"web.run_app(openai_server.make_app(), host='127.0.0.1', port={self.port}, print=None)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the fake provider did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def provider_a() -> Iterator[ProcessFake]:
    fake = ProcessFake()
    fake.start()
    try:
        yield fake
    finally:
        if fake.proc is not None and fake.proc.poll() is None:
            fake.kill()


@pytest.fixture
def provider_b() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


@dataclass
class Outcome:
    stream: bool
    started: float
    ended: float
    ok: bool
    deployment: str
    first_chunk: float | None = None  # streams: when the first content arrived
    error: str = ""


def _one(client: openai.OpenAI, stream: bool, n: int) -> Outcome:
    started = time.monotonic()
    messages = [{"role": "user", "content": f"request {n}"}]
    deployment = ""
    first: float | None = None
    try:
        if not stream:
            raw = client.chat.completions.with_raw_response.create(model="duo", messages=messages)  # type: ignore[arg-type]
            deployment = raw.headers.get("x-tollgate-deployment", "")
            assert raw.parse().choices[0].message.content
        else:
            raw_stream = client.chat.completions.with_raw_response.create(
                model="duo",
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            deployment = raw_stream.headers.get("x-tollgate-deployment", "")
            text = ""
            for chunk in raw_stream.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    if first is None:
                        first = time.monotonic()
                    text += chunk.choices[0].delta.content
            assert text == openai_server.ANSWER, text
        return Outcome(stream, started, time.monotonic(), True, deployment, first)
    except Exception as exc:  # what the client saw
        return Outcome(stream, started, time.monotonic(), False, deployment, first, f"{type(exc).__name__}: {exc}")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def test_killing_and_restarting_a_provider_under_mixed_load(provider_a: ProcessFake, provider_b: FakeServer) -> None:
    config = (
        "providers:\n"
        f"  a: {{type: openai, api_key: sk-a, base_url: '{provider_a.base_url}/v1', timeouts: {{connect: 1}}}}\n"
        f"  b: {{type: openai, api_key: sk-b, base_url: '{provider_b.base_url}/v1'}}\n"
        "models:\n  duo:\n    strategy: weighted\n    deployments:\n"
        f"      - {{provider: a, model: {MODEL}}}\n"
        f"      - {{provider: b, model: {MODEL}}}\n"
        "routing:\n  breaker: {consecutive_failures: 3, open_seconds: 1}\n"
    )
    a_key, b_key = f"a/{MODEL}", f"b/{MODEL}"
    with run_gateway(config) as gw:
        outcomes, marks = _run_load(gw, provider_a)
    warm_at, kill_at, restart_at = marks

    failed = [o for o in outcomes if not o.ok]
    total = len(outcomes)
    # Only streams already streaming from A when it died may fail: committed to A (the gateway sends the
    # response headers, naming the deployment, once the upstream's first chunk arrived), started before the
    # kill and ended after it. A stream cannot commit to A while A is down.
    unexpected = [o for o in failed if not (o.stream and o.deployment == a_key and o.started < kill_at <= o.ended)]
    phases = {
        "baseline (both up)": [o for o in outcomes if warm_at <= o.started < kill_at],
        "outage (A killed)": [o for o in outcomes if kill_at <= o.started < restart_at],
        "recovery (A restarted)": [o for o in outcomes if o.started >= restart_at],
    }
    lines = [f"chaos: {total} requests, {total - len(failed)} ok ({100 * (total - len(failed)) / total:.2f} %)"]
    p50s: dict[str, tuple[float, float]] = {}
    for name, group in phases.items():
        ok = [o for o in group if o.ok]
        plain = [1000 * (o.ended - o.started) for o in ok if not o.stream]
        ttft = [1000 * (o.first_chunk - o.started) for o in ok if o.stream and o.first_chunk is not None]
        p50s[name] = (_p(plain, 0.5), _p(ttft, 0.5))
        share_a = sum(1 for o in ok if o.deployment == a_key) / max(len(ok), 1)
        lines.append(
            f"  {name}: {len(group)} requests, {len(group) - len(ok)} failed, served by A {100 * share_a:.0f} %; "
            f"non-stream p50 {_p(plain, 0.5):.1f} ms p95 {_p(plain, 0.95):.1f} ms; "
            f"stream first token p50 {_p(ttft, 0.5):.1f} ms p95 {_p(ttft, 0.95):.1f} ms"
        )
    base, down = p50s["baseline (both up)"], p50s["outage (A killed)"]
    lines.append(
        f"  added latency during the outage (p50): non-stream {down[0] - base[0]:+.1f} ms, "
        f"stream first token {down[1] - base[1]:+.1f} ms"
    )
    print("\n".join(lines))
    for o in failed:
        print(f"  failed: stream={o.stream} deployment={o.deployment} {o.error[:160]}")

    assert not unexpected, [o.error for o in unexpected]
    assert all(phases.values()) and total > 100
    # Traffic really went to A before the kill, never while it was down, and again after it came back.
    assert any(o.deployment == a_key for o in phases["baseline (both up)"] if o.ok)
    assert not any(o.deployment == a_key and o.ok for o in phases["outage (A killed)"] if o.started > kill_at + 0.5)
    assert any(o.deployment == a_key for o in phases["recovery (A restarted)"] if o.ok)
    assert any(o.deployment == b_key for o in phases["outage (A killed)"] if o.ok)


def _run_load(gw: RunningGateway, provider_a: ProcessFake) -> tuple[list[Outcome], tuple[float, float, float]]:
    stop = threading.Event()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0, timeout=15)
        n = 0
        while not stop.is_set():
            result = _one(client, stream=(n + w) % 2 == 0, n=n)
            with lock:
                outcomes.append(result)
            n += 1
        client.close()

    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(worker, w) for w in range(WORKERS)]
        time.sleep(WARMUP)
        warm_at = time.monotonic()
        time.sleep(BASELINE)
        kill_at = time.monotonic()
        provider_a.kill()
        time.sleep(OUTAGE)
        restart_at = time.monotonic()  # A may accept connections from here on
        provider_a.start()
        time.sleep(RECOVERY)
        stop.set()
        for f in futures:
            f.result()
    return outcomes, (warm_at, kill_at, restart_at)
