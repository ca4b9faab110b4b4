"""Shared helpers for the multi-replica end-to-end tests: real `tollgate serve` processes on one PostgreSQL
database and one Redis key prefix, made for the run and removed after it.

Used by tests/e2e/test_distributed.py, tests/e2e/test_scale.py and benchmarks/bench_replicas.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fakes.harness import free_port

T = TypeVar("T")

POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_", "OLLAMA_", "TOLLGATE_"))
}


def run_sync(coro: Coroutine[object, object, T]) -> T:
    """Run ``coro`` on a loop of its own, in a thread: safe from sync fixtures and from inside a test loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def postgres_problem() -> str | None:
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL}: {type(exc).__name__}: {exc}"
    await conn.close()
    return None


def redis_problem() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"Redis at {REDIS_URL}: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def require_backends(what: str) -> None:
    """Skip when PostgreSQL or Redis does not answer, except in CI (``CI`` set), where that fails."""
    problems = [p for p in (run_sync(postgres_problem()), redis_problem()) if p]
    if problems:
        message = f"{what} needs the real PostgreSQL and Redis; " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)


@dataclass
class Replica:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


def start_replica(
    name: str, config: Path, data_dir: Path, master: str, port: int | None = None, log_mode: str = "wb"
) -> Replica:
    """Start ``tollgate serve`` on 127.0.0.1 (on ``port``, or a free one); its output goes to ``<name>.log``."""
    port = port or free_port()
    env = {**CLEAN_ENV, "TOLLGATE_MASTER_KEY": master, "TOLLGATE_DATA_DIR": str(data_dir)}
    log = data_dir.parent / f"{name}.log"
    with log.open(log_mode) as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tollgate", "serve", "--config", str(config), "--port", str(port)],
            cwd=data_dir.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Replica(name, f"http://127.0.0.1:{port}", proc, log)


async def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if replica.proc.poll() is not None:
                break
            try:
                async with session.get(replica.base + "/health/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"replica {replica.name} did not become ready:\n{replica.log.read_text()[-3000:]}")


async def all_ready(replicas: list[Replica]) -> None:
    await asyncio.wait_for(asyncio.gather(*(wait_ready(r) for r in replicas)), START_TIMEOUT + 5)


def stop_replicas(replicas: list[Replica]) -> list[int | None]:
    """SIGTERM every replica still running and wait (bounded): a clean stop flushes the ledger writers."""
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for r in replicas:
        try:
            codes.append(r.proc.wait(STOP_TIMEOUT))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait(5)
            codes.append(None)
    return codes


async def admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(name: str) -> str:
    """Create database ``name`` on the test server; returns its URL."""
    run_sync(admin_sql(f'CREATE DATABASE "{name}"'))
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    run_sync(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def delete_redis_prefix(*prefixes: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            left = list(client.scan_iter(match=prefix + "*", count=1000))
            if left:
                client.delete(*left)
    finally:
        client.close()
