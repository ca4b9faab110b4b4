"""Hot reload of the config file: POST /admin/reload and the file watcher, through a real gateway.

A stream in flight finishes on the config it started with; the next request uses the new one; an invalid
file is refused with its located errors while the old config keeps serving; sections that need a restart
are reported and left as they were.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tollgate.providers.base import Deployment

CONFIG = """
providers:
  up:
    type: openai
    api_key: sk-upstream
    base_url: {base}/v1
models:
  fast:
    deployments:
      - provider: up
        model: {model}
pricing:
  models:
    up/{model}: {{input: {price}, output: {price}}}
rate_limits:
  default_max_output_tokens: {max_out}
server:
  watch_config: {watch}
  watch_interval_seconds: 0.05
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


def write(
    path: Path, fake: FakeServer, *, model: str, price: float = 1.0, max_out: int = 4096, watch: bool = False
) -> None:
    text = CONFIG.format(base=fake.base_url, model=model, price=price, max_out=max_out, watch=str(watch).lower())
    path.write_text(text)


def reload(gw: RunningGateway, key: str | None = None) -> requests.Response:
    return requests.post(gw.base_url + "/admin/reload", headers=gw.auth(key), timeout=10)


def upstream_model(fake: FakeServer) -> str:
    body = fake.last.body
    return body.split(b'"model":"', 1)[1].split(b'"', 1)[0].decode()


def test_reload_applies_at_once_and_a_stream_in_flight_finishes_on_its_old_config(
    fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "tollgate.yaml"
    write(path, fake, model="scenario-slow_stream")
    with run_gateway(config_path=str(path)) as gw:
        client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
        with client.chat.completions.with_streaming_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as streaming:
            old_version = streaming.headers["x-tollgate-config-version"]
            # The upstream pauses 50 ms between chunks: reload while this stream is being served.
            write(path, fake, model="gpt-4o-mini", price=2.0)
            answer = reload(gw)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["previous_version"] == old_version
            assert body["config_version"] != old_version
            assert body["applied"] == ["models", "pricing"]
            assert body["restart_required"] == []
            chunks = [chunk for chunk in streaming.parse() if chunk.choices]  # the usage chunk has none
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        # The stream ran to its end on the deployment it started with.
        assert text and chunks[-1].choices[0].finish_reason == "stop"
        assert upstream_model(fake) == "scenario-slow_stream"

        after = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": "hi"}]
        )
        assert after.headers["x-tollgate-config-version"] == body["config_version"]
        assert upstream_model(fake) == "gpt-4o-mini"
        ready = requests.get(gw.base_url + "/health/ready", timeout=5).json()
        assert ready["config_version"] == body["config_version"]
        # Prices are the reloaded ones for everything that prices requests.
        reloader = gw.app.gateway.reloader
        assert reloader is not None
        price = reloader.prices.price_of(Deployment("up", "openai", "gpt-4o-mini", ""))
        assert price is not None and price.input == 2.0

        audit = requests.get(gw.base_url + "/admin/audit", headers=gw.auth(), timeout=5).json()["data"]
        record = next(r for r in audit if r["action"] == "reload_config")
        assert record["after"]["config_version"] == body["config_version"]


def test_an_invalid_file_is_refused_and_the_running_config_keeps_serving(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    write(path, fake, model="gpt-4o-mini")
    with run_gateway(config_path=str(path)) as gw:
        version = gw.app.gateway.snapshot.version
        path.write_text(path.read_text().replace("deployments:", "deployment:"))
        answer = reload(gw)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "invalid_config"
        assert "models.fast" in error["message"] and "stays in force" in error["message"]
        assert "sk-upstream" not in answer.text  # the file's secrets never travel back
        assert gw.app.gateway.snapshot.version == version
        chat = requests.post(
            gw.openai_base + "/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
            headers=gw.auth(),
            timeout=10,
        )
        assert chat.status_code == 200


def test_sections_that_need_a_restart_are_reported_and_left_as_they_were(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    write(path, fake, model="gpt-4o-mini", max_out=4096)
    with run_gateway(config_path=str(path)) as gw:
        write(path, fake, model="gpt-4o-mini", max_out=100)
        body = reload(gw).json()
        assert body["applied"] == [] and body["restart_required"] == ["rate_limits"]
        assert gw.app.gateway.snapshot.config.rate_limits.default_max_output_tokens == 4096


def test_only_admins_reload_and_only_a_gateway_started_from_a_file(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    write(path, fake, model="gpt-4o-mini")
    with run_gateway(config_path=str(path)) as gw:
        made = requests.post(
            gw.base_url + "/admin/keys", json={"name": "viewer", "role": "viewer"}, headers=gw.auth(), timeout=5
        ).json()
        refused = reload(gw, made["key"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_role"
        assert reload(gw, "sk-not-a-key").status_code == 401
    with run_gateway() as gw:
        answer = reload(gw)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "no_config_file"


def replace_file(path: Path, text: str) -> None:
    """Replace the file in one step, as editors and Kubernetes ConfigMap updates do (write, then rename)."""
    fresh = path.with_suffix(".tmp")
    fresh.write_text(text)
    os.replace(fresh, path)


def test_the_watcher_follows_the_file(fake: FakeServer, tmp_path: Path) -> None:
    path = tmp_path / "tollgate.yaml"
    write(path, fake, model="gpt-4o-mini", watch=True)
    with run_gateway(config_path=str(path)) as gw:
        gateway = gw.app.gateway
        first = gateway.snapshot.version
        replace_file(path, path.read_text())  # rewritten with the same bytes: no reload
        time.sleep(0.3)
        assert gateway.snapshot.version == first

        replace_file(path, path.read_text().replace("fast:", "quick:"))
        deadline = time.monotonic() + 5
        while gateway.snapshot.version == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "quick" in gateway.snapshot.config.models and "fast" not in gateway.snapshot.config.models
        models = requests.get(gw.openai_base + "/models", headers=gw.auth(), timeout=5).json()["data"]
        assert "quick" in {m["id"] for m in models}

        second = gateway.snapshot.version
        replace_file(path, "models: [not, a, mapping]\n")  # refused: logged, the running config stays
        time.sleep(0.3)
        assert gateway.snapshot.version == second
        assert gateway.reloader is not None and gateway.reloader.failures == 1
