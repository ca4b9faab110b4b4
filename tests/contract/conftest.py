"""Backends for the contract suites: in-process and the real Redis at 127.0.0.1:6379 (see ``redis_url``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tollgate.state.counters import CounterStore
from tollgate.state.counters_memory import MemoryCounterStore
from tollgate.state.counters_redis import RedisCounterStore

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class FakeClock:
    """Seconds that move only when a test says so; both backends read time from it."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _redis_answers() -> str | None:
    """``None`` when Redis answers PING, else why not."""
    client = redis.Redis.from_url(
        REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def require_redis() -> str:
    """The real Redis's URL; skips the test when Redis does not answer, except in CI (``CI`` set), where
    a missing Redis fails the test instead, so the Redis backend can never silently go untested there."""
    problem = _redis_answers()
    if problem is not None:
        message = f"Redis at {REDIS_URL} does not answer ({problem}); start redis-server to run the Redis backend"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    prefix = f"tollgate:test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


CounterStoreFactory = Callable[[], CounterStore]


@pytest.fixture(params=["memory", "redis"])
async def make_counter_store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[CounterStoreFactory]:
    """Makes stores of one backend that share their counters (for Redis: separate clients, like replicas)."""
    made: list[CounterStore] = []
    if request.param == "memory":
        shared = MemoryCounterStore(clock)

        def make() -> CounterStore:
            if not made:
                made.append(shared)
            return shared  # one process has one store

    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")

        def make() -> CounterStore:
            # A generous timeout: these suites test semantics, and a loaded CI machine can take longer than the
            # production default (0.5 s) to open the many connections a burst needs.
            store = RedisCounterStore(url, key_prefix=prefix, clock=clock, fail_open=False, timeout_seconds=5.0)
            made.append(store)
            return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def counter_store(make_counter_store: CounterStoreFactory) -> CounterStore:
    return make_counter_store()
