"""HTTP-level behaviour a raw client sees: bad input, auth failures, headers, limits, disconnects."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    config = "server:\n  max_body_bytes: 2048\n"
    env = {"OPENAI_API_KEY": "sk-upstream-secret", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway(config, env) as running:
        yield running


async def _post(
    gw: RunningGateway, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.base_url + path, data=body, headers={**gw.auth(), **(headers or {})}) as resp,
    ):
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, orjson.loads(await resp.read())


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b"", None, "empty"),
        (b'{"model": "gpt-4o-mini"}', "messages", "'messages' is required"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "'model' is required"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages[0].role",
            "role",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "temperature",
            "must be a number",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "stream",
            "boolean",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}',
            "messages[0].content",
            "string or an array",
        ),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", "between"),
    ],
)
async def test_bad_chat_bodies_get_400_in_openai_shape(
    gw: RunningGateway, body: bytes, param: str | None, fragment: str
) -> None:
    status, headers, payload = await _post(gw, CHAT, body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"
    assert fragment in payload["error"]["message"]
    assert payload["error"]["param"] == param
    assert headers["x-request-id"]


async def test_body_over_the_limit_is_413(gw: RunningGateway) -> None:
    big = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]})
    status, _, payload = await _post(gw, CHAT, big)
    assert status == 413 and payload["error"]["code"] == "request_too_large"


async def test_missing_and_wrong_keys_are_401(gw: RunningGateway) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    async with aiohttp.ClientSession() as session:
        async with session.post(gw.base_url + CHAT, data=body) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"
        async with session.post(gw.base_url + CHAT, data=body, headers={"Authorization": "Bearer tg-nope"}) as resp:
            assert resp.status == 401


async def test_request_id_is_echoed_and_generated(gw: RunningGateway) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    _, headers, _ = await _post(gw, CHAT, body, {"x-request-id": "my-trace-123"})
    assert headers["x-request-id"] == "my-trace-123"
    _, headers, _ = await _post(gw, CHAT, body)
    assert headers["x-request-id"].startswith("req_")


async def test_unknown_endpoint_and_wrong_method(gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.base_url + "/v1/nothing-here") as resp:
            assert resp.status == 404
            assert "Unknown endpoint" in (await resp.json())["error"]["message"]
        async with session.get(gw.base_url + CHAT) as resp:
            assert resp.status == 405


async def test_health_and_readiness(gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gw.base_url + "/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with session.get(gw.base_url + "/health/ready") as resp:
            payload = await resp.json()
            assert resp.status == 200 and payload["checks"] == {"config": "ok", "storage": "ok"}
            assert payload["config_version"]


async def test_virtual_key_lifecycle_through_admin_api(gw: RunningGateway) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gw.base_url + "/admin/keys",
            headers=gw.auth(),
            json={"name": "ci", "allowed_models": ["gpt-4o*"]},
        ) as resp:
            assert resp.status == 201
            created = await resp.json()
        key = created["key"]
        assert key.startswith("tg-") and created["key_hint"] != key
        user = {"Authorization": f"Bearer {key}"}
        async with session.post(gw.base_url + CHAT, data=body, headers=user) as resp:
            assert resp.status == 200
        # Outside the key's allow-list: 403 naming the model; /v1/models hides it.
        other = orjson.dumps({"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "x"}]})
        async with session.post(gw.base_url + CHAT, data=other, headers=user) as resp:
            assert resp.status == 403
            assert "demo/tollgate-demo" in (await resp.json())["error"]["message"]
        async with session.get(gw.base_url + "/v1/models", headers=user) as resp:
            ids = {m["id"] for m in (await resp.json())["data"]}
            assert "openai/gpt-4o-mini" in ids and "openai/gpt-4.1" not in ids and "demo/tollgate-demo" not in ids
        # A user key cannot use the admin API.
        async with session.get(gw.base_url + "/admin/keys", headers=user) as resp:
            assert resp.status == 403
        async with session.get(gw.base_url + "/admin/keys", headers=gw.auth()) as resp:
            listed = (await resp.json())["data"]
            assert any(k["id"] == created["id"] for k in listed)
            assert all("key" not in k and "key_hash" not in k for k in listed)
        async with session.post(gw.base_url + f"/admin/keys/{created['id']}/revoke", headers=gw.auth()) as resp:
            assert resp.status == 200 and (await resp.json())["revoked_at"]
        async with session.post(gw.base_url + CHAT, data=body, headers=user) as resp:
            assert resp.status == 401
            assert "revoked" in (await resp.json())["error"]["message"]


async def test_client_disconnect_cancels_the_upstream_stream(gw: RunningGateway) -> None:
    before = len(openai_server.STREAM_OUTCOMES)
    body = orjson.dumps(
        {
            "model": "openai/scenario-slow_stream",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    host, port = gw.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.master_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    assert b"200 OK" in await reader.readuntil(b"\r\n")
    await reader.readuntil(b"data: ")  # the stream has started
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()
    deadline = time.monotonic() + 5
    # The fake runs in another thread, so there is no event to await: poll its record.
    while len(openai_server.STREAM_OUTCOMES) == before and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert openai_server.STREAM_OUTCOMES[before:] == ["aborted"]


async def test_simple_chat_api_with_x_api_key(gw: RunningGateway) -> None:
    body = orjson.dumps({"prompt": "hello", "model": "openai/gpt-4o-mini"})
    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.base_url + "/chat", data=body, headers={"X-API-Key": gw.master_key}) as resp,
    ):
        assert resp.status == 200
        payload = await resp.json()
    assert payload["response"] == "Hello from the fake OpenAI."
    assert payload["provider"] == "openai" and payload["model"] == "gpt-4o-mini"
    assert payload["cache_hit"] is False and payload["latency_ms"] > 0
    assert payload["usage"]["completion_tokens"] == 5
    assert payload["request_id"] == resp.headers["x-request-id"]


async def test_simple_chat_defaults_to_a_configured_provider_and_validates(gw: RunningGateway) -> None:
    status, headers, payload = await _post(gw, "/chat", b'{"prompt": "hi"}')
    assert status == 200 and headers["x-tollgate-provider"] == "openai"
    status, _, payload = await _post(gw, "/chat", b'{"prompt": ""}')
    assert status == 400 and payload["error"]["param"] == "prompt"


async def test_embeddings_input_is_validated(gw: RunningGateway) -> None:
    status, _, payload = await _post(gw, "/v1/embeddings", b'{"model": "openai/x", "input": []}')
    assert status == 400 and payload["error"]["param"] == "input"
