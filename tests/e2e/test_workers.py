"""`tollgate serve --workers 2` on the real Redis: one port, two processes, metrics that add up across them,
a killed worker restarted, every request in the ledger after a SIGTERM; and the refusal without Redis."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fakes.harness import free_port

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MASTER = "tg-master-workers-test"
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(
        ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_", "PROMETHEUS_")
    )
}


def _require_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        message = f"serve --workers needs the real Redis at {REDIS_URL}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)
    finally:
        client.close()


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    data: Path
    log: Path

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def metrics(self) -> dict[str, float]:
        """Totals per sample name (summed over label sets) from one scrape, answered by whichever worker."""
        text = requests.get(self.base + "/metrics", timeout=5).text
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    _require_redis()
    prefix = f"tollgate:workers:{uuid.uuid4().hex[:12]}:"
    config = tmp_path / "tollgate.yaml"
    config.write_text(
        f"""
server:
  data_dir: {tmp_path / "data"}
  shutdown_grace_seconds: 10
rate_limits:
  counter_url: {REDIS_URL}
  key_prefix: "{prefix}"
""",
        encoding="utf-8",
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tollgate", "serve", "--config", str(config), "--port", str(port), "--workers", "2"],
            cwd=tmp_path,
            env={**CLEAN_ENV, "TOLLGATE_MASTER_KEY": MASTER},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", tmp_path / "data", log)
    deadline = time.monotonic() + 60
    while "Try:" not in log.read_text():  # the banner is printed once every worker is ready
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        client = redis.Redis.from_url(REDIS_URL)
        try:
            left = list(client.scan_iter(match=prefix + "*", count=1000))
            if left:
                client.delete(*left)
        finally:
            client.close()


def _one(base: str, request_id: str) -> str:
    # A client (and so a connection) per request: the two workers share the accepts.
    with openai.OpenAI(base_url=base + "/v1", api_key=MASTER, max_retries=0, timeout=30) as client:
        answer = client.chat.completions.create(
            model="demo/tollgate-demo",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-request-id": request_id},
        )
    return answer.choices[0].message.content or ""


def _burst(base: str, ids: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda rid: _one(base, rid), ids))
    assert all("demo" in a for a in answers)


def _counter_pids(data: Path) -> set[int]:
    """Workers that recorded a counter: prometheus-client names each process's file after its pid."""
    files = (data / "prometheus-multiproc").glob("counter_*.db")
    return {int(m.group(1)) for f in files if (m := re.match(r"counter_(\d+)\.db", f.name))}


def test_two_workers_share_the_port_and_their_metrics_add_up(served: Served) -> None:
    pids = served.worker_pids()
    assert len(pids) == 2
    sent: list[str] = []
    # Until both workers have served requests (the kernel picks who accepts), in bounded rounds.
    for round_ in range(10):
        ids = [f"w-{round_}-{i}" for i in range(24)]
        _burst(served.base, ids)
        sent += ids
        if _counter_pids(served.data) >= pids:
            break
    assert _counter_pids(served.data) >= pids, "one worker served every request"

    # Several scrapes, each answered by either worker: every one sees all requests of both.
    for _ in range(6):
        totals = served.metrics()
        assert totals["tollgate_requests_total"] == len(sent)
        assert totals["tollgate_requests_in_flight"] == 0
        assert totals["tollgate_build_info"] == 1  # livemax: one series, not one per worker

    # A worker that dies is replaced; what it counted still counts.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (len(served.worker_pids()) == 2 and victim not in served.worker_pids()):
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.1)
    while "restarted and ready" not in served.log.read_text():
        assert time.monotonic() < deadline, served.log.read_text()
        time.sleep(0.1)
    more = [f"after-{i}" for i in range(10)]
    _burst(served.base, more)
    sent += more
    for _ in range(4):
        assert served.metrics()["tollgate_requests_total"] == len(sent)
    assert "exited with status -9: restarting it" in served.log.read_text()

    # SIGTERM: both workers drain and flush; the supervisor exits 0. Every request is in the ledger once,
    # except those of the killed worker still queued in its memory (at most what it served since its last flush).
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(40) == 0, served.log.read_text()
    conn = sqlite3.connect(served.data / "tollgate.db")
    try:
        recorded = [r[0] for r in conn.execute("SELECT request_id FROM ledger")]
    finally:
        conn.close()
    assert len(recorded) == len(set(recorded))
    assert set(more) <= set(recorded)
    assert "Traceback" not in served.log.read_text()


def test_workers_without_redis_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "tollgate.yaml"
    config.write_text(f"server:\n  data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "tollgate", "serve", "--config", str(config), "--workers", "2"],
        cwd=tmp_path,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs Redis (rate_limits.counter_url)" in done.stderr and "Traceback" not in done.stderr


def test_spools_of_workers_not_running_now_are_handed_to_worker_zero(tmp_path: Path) -> None:
    from tollgate.policies.ledger import SPOOL_FILE
    from tollgate.server import adopt_worker_spools
    from tollgate.state.ledger import LedgerRow
    from tollgate.state.ledger_spool import LedgerSpool

    def rows(name: str) -> list[LedgerRow]:
        return [LedgerRow(id=f"lg_{name}{i}", request_id=f"{name}-{i}", ts=1.0, endpoint="chat") for i in range(2)]

    LedgerSpool(tmp_path / SPOOL_FILE).append(rows("zero"))
    LedgerSpool(tmp_path / "ledger-spool-w1.jsonl").append(rows("one"))
    LedgerSpool(tmp_path / "ledger-spool-w3.jsonl").append(rows("three"))
    (tmp_path / "ledger-spool-w3.jsonl.replaying").write_bytes(rows("three-r")[0].to_json())  # no final newline
    assert adopt_worker_spools(tmp_path, 2) == 2  # worker 1 still runs: its file stays its own
    assert (tmp_path / "ledger-spool-w1.jsonl").exists() and not list(tmp_path.glob("ledger-spool-w3*"))
    zero = LedgerSpool(tmp_path / SPOOL_FILE)
    assert zero.count() == 5

    async def replay() -> list[str]:
        written: list[str] = []

        async def write(batch: object) -> int:
            assert isinstance(batch, list)
            written.extend(r.request_id for r in batch)
            return len(batch)

        await zero.replay(write, 100)
        return written

    assert sorted(asyncio.run(replay())) == ["three-0", "three-1", "three-r-0", "zero-0", "zero-1"]
    assert adopt_worker_spools(tmp_path, 1) == 1 and zero.count() == 2  # going down to one worker
