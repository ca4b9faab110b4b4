"""Graceful shutdown of a real `tollgate serve`: readiness drains first, streams in flight finish, the ledger
is flushed, the process exits 0 within its deadline; a stream longer than the grace period is cut at it."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import orjson
import pytest
import requests
from aiohttp import web

from tests.fakes.harness import FakeServer, free_port, serve

pytestmark = pytest.mark.slow

MASTER = "tg-master-shutdown-test"
CHUNKS = 30
CHUNK_GAP = 0.1  # the fake stream lasts CHUNKS * CHUNK_GAP seconds
DRAIN = 0.6

CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_"))
}


async def _slow_chat(request: web.Request) -> web.StreamResponse:
    """An OpenAI chat stream of CHUNKS words, one every CHUNK_GAP seconds, in the real wire format."""
    body = orjson.loads(await request.read())
    chunks = int(body.get("max_tokens") or CHUNKS)
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
    first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    await resp.write(b"data: " + orjson.dumps(first) + b"\n\n")
    for i in range(chunks):
        await asyncio.sleep(CHUNK_GAP)
        piece = {**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
        await resp.write(b"data: " + orjson.dumps(piece) + b"\n\n")
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    await resp.write(b"data: " + orjson.dumps(last) + b"\n\n")
    usage = {"prompt_tokens": 3, "completion_tokens": chunks, "total_tokens": 3 + chunks}
    await resp.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _slow_chat)
    with serve(app) as server:
        yield server


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    base: str
    db: Path
    log: Path


def _start(folder: Path, upstream: FakeServer, grace: float) -> Gateway:
    config = folder / "tollgate.yaml"
    config.write_text(
        f"""
server:
  data_dir: {folder / "data"}
  shutdown_drain_seconds: {DRAIN}
  shutdown_grace_seconds: {grace}
providers:
  slow: {{type: openai, base_url: "{upstream.base_url}/v1", api_key: test-key}}
pricing:
  models:
    slow/slow-model: {{input: 1.0, output: 2.0}}
""",
        encoding="utf-8",
    )
    port = free_port()
    log = folder / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tollgate", "serve", "--config", str(config), "--port", str(port)],
            cwd=folder,
            env={**CLEAN_ENV, "TOLLGATE_MASTER_KEY": MASTER},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    gw = Gateway(proc, f"http://127.0.0.1:{port}", folder / "data" / "tollgate.db", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(gw.base + "/health/ready", timeout=1).status_code == 200:
                return gw
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway did not start:\n" + log.read_text())


def _client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base + "/v1", api_key=MASTER, max_retries=0, timeout=30)


class StreamReader(threading.Thread):
    """Consumes one stream through the official SDK in the background, keeping every piece of text."""

    def __init__(self, client: openai.OpenAI, request_id: str, chunks: int) -> None:
        super().__init__(daemon=True)
        self.client, self.request_id, self.chunks = client, request_id, chunks
        self.pieces: list[str] = []
        self.finish_reason: str | None = None
        self.usage: openai.types.CompletionUsage | None = None
        self.error: BaseException | None = None
        self.started = threading.Event()

    def run(self) -> None:
        try:
            stream = self.client.chat.completions.create(
                model="slow/slow-model",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=self.chunks,
                extra_headers={"x-request-id": self.request_id},
            )
            for chunk in stream:
                self.started.set()
                if chunk.usage is not None:
                    self.usage = chunk.usage
                for choice in chunk.choices:
                    self.pieces.append(choice.delta.content or "")
                    self.finish_reason = choice.finish_reason or self.finish_reason
        except BaseException as exc:  # recorded for the test to assert on
            self.error = exc
        finally:
            self.started.set()


def _ledger_rows(db: Path, request_id: str) -> list[tuple[int, int, int, int]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT status, stream, output_tokens, cost_nanos FROM ledger WHERE request_id = ?", (request_id,)
        ).fetchall()
    finally:
        conn.close()


def test_sigterm_drains_readiness_finishes_the_stream_and_flushes_the_ledger(
    tmp_path: Path, upstream: FakeServer
) -> None:
    gw = _start(tmp_path, upstream, grace=20)
    client = _client(gw)
    reader = StreamReader(client, "shutdown-stream-1", CHUNKS)
    reader.start()
    assert reader.started.wait(10) and reader.error is None, reader.error

    sent = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    # Readiness goes false first, while the listener still answers (the drain window).
    ready = requests.get(gw.base + "/health/ready", timeout=2)
    assert ready.status_code == 503
    assert ready.json()["reason"] == "draining" and ready.json()["checks"]["server"] == "draining"
    # Liveness stays up: the process is healthy, only leaving.
    assert requests.get(gw.base + "/health", timeout=2).status_code == 200

    # After the drain window the listener is closed: new connections are refused, while the stream goes on.
    refused = False
    while time.monotonic() - sent < DRAIN + 3 and not refused:
        try:
            requests.get(gw.base + "/health/ready", timeout=1)
        except requests.ConnectionError:
            refused = True
        time.sleep(0.05)
    assert refused, "the listener still accepted connections after the drain window"
    assert reader.is_alive(), "the stream should still be running when the listener closes"
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="demo/tollgate-demo", messages=[{"role": "user", "content": "x"}])

    reader.join(30)
    assert reader.error is None, reader.error
    assert "".join(reader.pieces) == "".join(f"w{i} " for i in range(CHUNKS))
    assert reader.finish_reason == "stop"
    assert reader.usage is not None and reader.usage.completion_tokens == CHUNKS

    code = gw.proc.wait(30)
    elapsed = time.monotonic() - sent
    assert code == 0, gw.log.read_text()
    # The deadline: drain + grace + flush; the process left as soon as the stream was done, well before it.
    assert elapsed < DRAIN + 20
    # The ledger row of the stream was flushed before exit: status 200, streamed, the provider's usage, priced.
    rows = _ledger_rows(gw.db, "shutdown-stream-1")
    assert rows == [(200, 1, CHUNKS, 3 * 1000 + CHUNKS * 2000)]
    assert "Traceback" not in gw.log.read_text()


def test_a_stream_longer_than_the_grace_period_is_cut_at_the_deadline_and_still_recorded(
    tmp_path: Path, upstream: FakeServer
) -> None:
    grace = 1.0
    gw = _start(tmp_path, upstream, grace=grace)
    reader = StreamReader(_client(gw), "shutdown-stream-long", 300)  # 30 s of stream
    reader.start()
    assert reader.started.wait(10) and reader.error is None, reader.error

    sent = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    code = gw.proc.wait(DRAIN + grace + 20)
    elapsed = time.monotonic() - sent
    reader.join(10)

    assert code == 0, gw.log.read_text()
    assert elapsed < DRAIN + grace + 10  # nowhere near the stream's 30 s
    assert reader.finish_reason is None and 0 < len(reader.pieces) < 300  # cut, not completed
    # The cut request is still in the ledger, written during the shutdown's flush.
    rows = _ledger_rows(gw.db, "shutdown-stream-long")
    assert len(rows) == 1 and rows[0][1] == 1


def test_each_further_signal_skips_to_the_next_step(tmp_path: Path) -> None:
    """The server's steps without a process: drain, then close the listener, then stop waiting."""
    import uvicorn

    from tollgate.api.app import create_app
    from tollgate.config.schema import TollgateConfig
    from tollgate.server import GracefulServer

    config = TollgateConfig.model_validate(
        {"server": {"data_dir": str(tmp_path)}, "storage": {"database_url": "memory://"}}
    )
    app, _, _ = create_app(config, {"TOLLGATE_MASTER_KEY": MASTER})
    server = GracefulServer(uvicorn.Config(app), app.gateway, drain_seconds=30)
    server.handle_exit(signal.SIGTERM, None)
    assert app.gateway.draining and not server.should_exit  # readiness 503, the listener still open
    asyncio.run(server.on_tick(1))
    assert not server.should_exit  # 30 s of drain are not over
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.force_exit  # the listener closes; requests in flight go on
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit  # stop waiting for them

    quick = GracefulServer(uvicorn.Config(app), app.gateway, drain_seconds=0.05)
    quick.handle_exit(signal.SIGTERM, None)
    time.sleep(0.06)
    assert asyncio.run(quick.on_tick(1)) is True  # the drain window is over: uvicorn's shutdown begins
