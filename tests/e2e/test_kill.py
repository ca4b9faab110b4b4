"""A `tollgate serve` killed with SIGKILL right after answering loses no ledger row and doubles none.

The ledger writer batches rows in memory between passes; the journal puts each row on disk as it is made,
and the next start replays what the killed process left (state/ledger_journal.py).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.fakes.harness import free_port

pytestmark = pytest.mark.slow

MASTER = "tg-master-kill-test"
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_"))
}


def _serve(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**CLEAN_ENV, "TOLLGATE_MASTER_KEY": MASTER, "TOLLGATE_DATA_DIR": str(folder)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def _ledger(folder: Path, ids: list[str]) -> dict[str, int]:
    with sqlite3.connect(folder / "tollgate.db") as db:
        marks = ",".join("?" * len(ids))
        rows = db.execute(f"SELECT request_id, COUNT(*) FROM ledger WHERE request_id IN ({marks}) GROUP BY 1", ids)
        return dict(rows.fetchall())


def test_rows_answered_just_before_a_sigkill_are_in_the_ledger_once(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    ids = [f"kill-{uuid.uuid4().hex[:12]}" for _ in range(40)]
    try:
        with requests.Session() as session:
            for rid in ids:
                answer = session.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    json={"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"Authorization": f"Bearer {MASTER}", "x-request-id": rid},
                    timeout=10,
                )
                assert answer.status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)  # at once: the last rows are still in the writer's memory
        proc.wait(10)
    restarted = _serve(tmp_path, port)  # replays what the killed process journaled
    try:
        deadline = time.monotonic() + 10
        while len(_ledger(tmp_path, ids)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        restarted.terminate()
        restarted.wait(20)
    counts = _ledger(tmp_path, ids)
    assert sorted(counts) == sorted(ids), f"missing: {sorted(set(ids) - set(counts))}"
    assert set(counts.values()) == {1}
