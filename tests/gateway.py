"""Start a real Tollgate on a loopback socket (uvicorn in a background thread) for integration tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from tests.fakes.harness import free_port
from tollgate.api.app import TollgateApp, create_app
from tollgate.config.loader import load_config_file, parse_config

MASTER_KEY = "tg-master-test-key-0123456789"


@dataclass
class RunningGateway:
    app: TollgateApp
    base_url: str
    master_key: str

    @property
    def openai_base(self) -> str:
        return self.base_url + "/v1"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.master_key}"}


@contextmanager
def run_gateway(
    yaml_text: str = "",
    env: Mapping[str, str] | None = None,
    data_dir: str | None = None,
    config_path: str | None = None,
    port: int | None = None,
) -> Iterator[RunningGateway]:
    """A gateway with only the given env (no inherited provider keys), an in-memory key store by default.
    With ``config_path`` the config is that file (and ``POST /admin/reload`` re-reads it). ``port``: when
    the config must name the gateway's own address (an SSO redirect URL), pick it first with free_port()."""
    full_env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_DATABASE_URL": "memory://"}
    if data_dir is not None:
        full_env["TOLLGATE_DATA_DIR"] = data_dir
        full_env.pop("TOLLGATE_DATABASE_URL")
    full_env.update(env or {})
    if config_path is not None:
        config = load_config_file(config_path, full_env)
    else:
        config = parse_config(yaml_text, "<test>", full_env)
    app, master_key, _ = create_app(config, full_env, config_path=config_path)
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="asyncio",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield RunningGateway(app, f"http://127.0.0.1:{port}", master_key)
    finally:
        server.should_exit = True
        thread.join(10)
