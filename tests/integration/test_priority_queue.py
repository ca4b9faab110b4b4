"""Priority queues at max_concurrency on a real gateway: waiters served by caller priority, bounded wait and size."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import orjson
import pytest
from aiohttp import web

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tests.integration.test_resilience import Response, _post

KEY = "slow/gpt-4o-mini"


class Held:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.arrived: list[str] = []  # the message of each call, in the order the provider got them


@pytest.fixture
def held() -> Iterator[tuple[FakeServer, Held]]:
    state = Held()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        state.arrived.append(body["messages"][0]["content"])
        await asyncio.to_thread(state.gate.wait, 20)
        return await openai_server.chat(request)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    with serve(app) as server:
        yield server, state


def _config(base: str, max_wait: float, max_size: int = 10) -> str:
    return (
        f"providers:\n  slow: {{type: openai, api_key: sk-s, base_url: '{base}/v1'}}\n"
        "models:\n  one:\n    deployments:\n      - {provider: slow, model: gpt-4o-mini, max_concurrency: 1}\n"
        f"routing:\n  queue: {{max_wait_seconds: {max_wait}, max_size: {max_size}}}\n"
    )


def _ask(gw: RunningGateway, text: str, key: str | None = None) -> Response:
    body = {"model": "one", "messages": [{"role": "user", "content": text}]}
    return _post(gw.base_url + "/v1/chat/completions", body, gw.auth(key))


def _key(gw: RunningGateway, name: str, priority: object | None) -> str:
    body: dict[str, object] = {"name": name}
    if priority is not None:
        body["metadata"] = {"priority": priority}
    return str(_post(gw.base_url + "/admin/keys", body, gw.auth()).json()["key"])


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _waiting(gw: RunningGateway) -> int:
    queue = gw.app.gateway.routing_state.queues.get(KEY)
    return len(queue) if queue is not None else 0


def test_waiters_are_served_highest_priority_first_and_a_full_queue_is_refused(
    held: tuple[FakeServer, Held],
) -> None:
    _, state = held
    with run_gateway(_config(held[0].base_url, max_wait=15, max_size=3)) as gw:
        keys = {name: _key(gw, name, p) for name, p in (("low", None), ("mid", 5), ("high", "10"))}
        with ThreadPoolExecutor(4) as pool:
            holder = pool.submit(_ask, gw, "holder")
            _until(lambda: state.arrived == ["holder"], "the first call to hold the only slot")
            waiting: dict[str, Future[Response]] = {}
            for n, name in enumerate(("low", "mid", "high"), 1):  # queued in the order low, mid, high
                waiting[name] = pool.submit(_ask, gw, name, keys[name])
                _until(lambda n=n: _waiting(gw) == n, f"{n} waiting")  # type: ignore[misc]
            full = _ask(gw, "one too many", keys["high"])
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["code"] == "deployment_queue_full"
            state.gate.set()
            assert holder.result(10).status_code == 200
            answers = {name: f.result(10) for name, f in waiting.items()}
        assert state.arrived == ["holder", "high", "mid", "low"]
        assert all(r.status_code == 200 and float(r.headers["x-tollgate-queue-wait-ms"]) > 0 for r in answers.values())
        assert gw.app.gateway.routing_state.in_flight[KEY] == 0 and _waiting(gw) == 0


def test_a_wait_past_max_wait_is_a_503_and_leaks_no_slot(held: tuple[FakeServer, Held]) -> None:
    _, state = held
    with run_gateway(_config(held[0].base_url, max_wait=0.3)) as gw:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(_ask, gw, "holder")
            _until(lambda: state.arrived == ["holder"], "the first call")
            late = _ask(gw, "late")
            assert late.status_code == 503 and late.headers["retry-after"] == "1"
            assert late.json()["error"]["code"] == "deployment_queue_timeout"
            state.gate.set()
            assert holder.result(10).status_code == 200
        assert state.arrived == ["holder"]  # the timed-out request never reached the provider
        assert gw.app.gateway.routing_state.in_flight[KEY] == 0
        assert _ask(gw, "after").status_code == 200  # the slot is free again


def test_without_a_queue_a_full_deployment_is_skipped_at_once(held: tuple[FakeServer, Held]) -> None:
    _, state = held
    with run_gateway(_config(held[0].base_url, max_wait=0)) as gw, ThreadPoolExecutor(1) as pool:
        holder = pool.submit(_ask, gw, "holder")
        _until(lambda: state.arrived == ["holder"], "the first call")
        busy = _ask(gw, "busy")
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "no_healthy_deployment"
        state.gate.set()
        assert holder.result(10).status_code == 200
