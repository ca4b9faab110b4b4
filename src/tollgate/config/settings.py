"""Static settings (listen address, data folder, storage URL, master key): read once at start, env-overridable."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tollgate.config.schema import TollgateConfig

MASTER_KEY_FILE = "master.key"


@dataclass(frozen=True, slots=True)
class StaticSettings:
    host: str
    port: int
    data_dir: Path
    database_url: str
    max_body_bytes: int
    log_level: str
    master_key_from: str  # "env", "config" or "file": where the master key came from (never the key)


def static_settings(config: TollgateConfig, env: Mapping[str, str] | None = None) -> StaticSettings:
    env = os.environ if env is None else env
    server = config.server
    data_dir = Path(env.get("TOLLGATE_DATA_DIR") or server.data_dir).expanduser()
    db = env.get("TOLLGATE_DATABASE_URL") or config.storage.database_url or f"sqlite:///{data_dir / 'tollgate.db'}"
    port_text = env.get("TOLLGATE_PORT")
    port = int(port_text) if port_text and port_text.isdigit() else server.port
    source = "env" if env.get("TOLLGATE_MASTER_KEY") else ("config" if server.master_key else "file")
    return StaticSettings(
        host=env.get("TOLLGATE_HOST") or server.host,
        port=port,
        data_dir=data_dir,
        database_url=db,
        max_body_bytes=server.max_body_bytes,
        log_level=env.get("TOLLGATE_LOG_LEVEL") or server.log_level,
        master_key_from=source,
    )


def load_or_create_master_key(
    config: TollgateConfig, settings: StaticSettings, env: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """The master key and whether it was generated just now (so the caller prints it, once)."""
    env = os.environ if env is None else env
    if env.get("TOLLGATE_MASTER_KEY"):
        return env["TOLLGATE_MASTER_KEY"], False
    if config.server.master_key:
        return config.server.master_key, False
    path = settings.data_dir / MASTER_KEY_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "tg-master-" + secrets.token_urlsafe(32)
    # Create with 0600 from the start: no window in which another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return key, True
