"""Rotation without restart, through a real gateway: a provider key from Vault (the KV v2 fake, read by hvac)
or from a mounted file changes, and the next request carries the new key while a stream in flight finishes
on the old one. Vault going down later keeps the last good key. No value shows in a log line or a response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
import requests

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.fakes.vault_server import VaultState, make_app
from tests.gateway import RunningGateway, run_gateway

OLD, NEW = "sk-rotation-old-1a2b", "sk-rotation-new-3c4d"

CONFIG = """
secrets:
  refresh_seconds: 0.05
  vault:
    address: {vault}
providers:
  up:
    type: openai
    api_key: "{key}"
    base_url: {base}/v1
models:
  fast:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  slow:
    deployments: [{{provider: up, model: scenario-slow_stream}}]
pricing:
  models:
    up/gpt-4o-mini: {{input: 1, output: 1}}
    up/scenario-slow_stream: {{input: 1, output: 1}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


@pytest.fixture
def vault() -> Iterator[tuple[FakeServer, VaultState]]:
    state = VaultState()
    state.put("secret", "tollgate/up", {"api_key": OLD})
    state.add_token("tok-gateway", "secret/data/tollgate/")
    with serve(make_app(state)) as server:
        yield server, state


def bearer_of_last_call(upstream: FakeServer, model: str) -> str:
    for recorded in reversed(upstream.requests):
        if f'"model":"{model}"'.encode() in recorded.body:
            headers = {k.lower(): v for k, v in recorded.headers.items()}
            return headers["authorization"]
    raise AssertionError(f"no upstream call for {model}")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def chat(gw: RunningGateway) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    answer = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content


def replace(path: Path, text: str) -> None:
    """Swap the file's content in one rename, as a ConfigMap update does: the refresher retries its reload
    every 50 ms here, and a file caught half-written (truncated, say) would be a different config."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    staged.replace(path)


def no_secret_in(text: str) -> None:
    assert OLD not in text and NEW not in text


def test_a_rotated_vault_key_is_used_at_once_a_stream_in_flight_finishes_and_vault_down_keeps_the_last_key(
    upstream: FakeServer, vault: tuple[FakeServer, VaultState], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, state = vault
    path = tmp_path / "tollgate.yaml"
    path.write_text(
        CONFIG.format(vault=server.base_url, key="${vault:secret/data/tollgate/up#api_key}", base=upstream.base_url)
    )
    with run_gateway(config_path=str(path), env={"VAULT_TOKEN": "tok-gateway"}) as gw:
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {OLD}"
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        with client.chat.completions.with_streaming_response.create(
            model="slow", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as streaming:
            started_on = streaming.headers["x-tollgate-config-version"]
            chunks = streaming.parse()
            first = next(chunks)
            # Rotate while the stream is being served; the refresher applies it with a new snapshot.
            state.put("secret", "tollgate/up", {"api_key": NEW})
            wait_for(lambda: gw.app.gateway.snapshot.version != started_on, "the rotated key to be applied")
            rest = [chunk for chunk in chunks if chunk.choices]
        assert first.choices[0].delta.role == "assistant" or first.choices[0].delta.content is not None
        assert rest[-1].choices[0].finish_reason == "stop"  # the stream ran to its end
        assert bearer_of_last_call(upstream, "scenario-slow_stream") == f"Bearer {OLD}"

        after = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}]
        )
        assert after.headers["x-tollgate-config-version"] == gw.app.gateway.snapshot.version != started_on
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {NEW}"

        # Vault goes down: refreshes fail, the last good key keeps serving.
        store = gw.app.gateway.reloader.secrets if gw.app.gateway.reloader else None
        assert store is not None
        failures = store.failures
        state.sealed = True
        wait_for(lambda: store.failures > failures + 1, "refreshes to fail")
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {NEW}"

        # Nothing the gateway says shows a key: the reload answer, health, the audit log.
        reload = requests.post(gw.base_url + "/admin/reload", headers=gw.auth(), timeout=10)
        assert reload.status_code == 200, reload.text  # served from the cache while Vault is sealed
        no_secret_in(reload.text)
        no_secret_in(requests.get(gw.base_url + "/health/ready", timeout=5).text)
        no_secret_in(requests.get(gw.base_url + "/health", timeout=5).text)
        no_secret_in(requests.get(gw.base_url + "/admin/audit", headers=gw.auth(), timeout=5).text)
        metrics = requests.get(gw.base_url + "/metrics", timeout=5).text
        no_secret_in(metrics)
        samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("tollgate_secret_"))
        assert float(samples["tollgate_secret_rotations_total"]) == 1
        assert float(samples["tollgate_secret_refresh_failures_total"]) >= 2

    messages = [record.getMessage() for record in caplog.records]
    assert any("secrets changed: vault:secret/data/tollgate/up#api_key" in m for m in messages)
    assert any("could not be refreshed" in m and "Vault is sealed" in m for m in messages)
    for message in messages:
        no_secret_in(message)
        assert "tok-gateway" not in message


def test_a_rotated_file_secret_is_used_at_once(upstream: FakeServer, tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(OLD + "\n")
    path = tmp_path / "tollgate.yaml"
    config = CONFIG.format(vault="http://127.0.0.1:1", key=f"${{file:{key}}}", base=upstream.base_url)
    path.write_text(config.replace("  vault:\n    address: http://127.0.0.1:1\n", ""))
    with run_gateway(config_path=str(path)) as gw:
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {OLD}"
        version = gw.app.gateway.snapshot.version
        # What the kubelet does: write the new value aside, then swap it in with a rename.
        staged = tmp_path / "api-key.new"
        staged.write_text(NEW)
        staged.replace(key)
        wait_for(lambda: gw.app.gateway.snapshot.version != version, "the new file value to be applied")
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {NEW}"


def test_vault_down_at_start_refuses_to_start_naming_the_secret(upstream: FakeServer, tmp_path: Path) -> None:
    from tests.fakes.harness import free_port
    from tollgate.config.loader import ConfigError

    path = tmp_path / "tollgate.yaml"
    address = f"http://127.0.0.1:{free_port()}"
    path.write_text(
        CONFIG.format(vault=address, key="${vault:secret/data/tollgate/up#api_key}", base=upstream.base_url)
    )
    with pytest.raises(ConfigError) as err, run_gateway(config_path=str(path), env={"VAULT_TOKEN": "tok-gateway"}):
        pass
    assert f"providers.up.api_key: vault:secret/data/tollgate/up#api_key: Vault at {address} is unreachable" in str(
        err.value
    )
    assert "tok-gateway" not in str(err.value)


def test_a_rotation_whose_reload_is_refused_is_applied_once_the_file_is_fixed(
    upstream: FakeServer, vault: tuple[FakeServer, VaultState], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, state = vault
    path = tmp_path / "tollgate.yaml"
    good = CONFIG.format(vault=server.base_url, key="${vault:secret/data/tollgate/up#api_key}", base=upstream.base_url)
    path.write_text(good)
    with run_gateway(config_path=str(path), env={"VAULT_TOKEN": "tok-gateway"}) as gw:
        version = gw.app.gateway.snapshot.version
        replace(path, good.replace("deployments:", "deployment:"))  # someone is editing the file, badly
        state.put("secret", "tollgate/up", {"api_key": NEW})
        wait_for(
            lambda: any("secrets changed but the config cannot be reloaded" in r.getMessage() for r in caplog.records),
            "the refused reload",
        )
        assert gw.app.gateway.snapshot.version == version
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {OLD}"  # the config in force
        replace(path, good)
        wait_for(lambda: gw.app.gateway.snapshot.version != version, "the rotation to be applied")
        chat(gw)
        assert bearer_of_last_call(upstream, "gpt-4o-mini") == f"Bearer {NEW}"
    for record in caplog.records:
        no_secret_in(record.getMessage())
