"""Static settings and the master key: env overrides, generation with mode 600, printed once."""

from __future__ import annotations

import stat
from pathlib import Path

from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import load_or_create_master_key, static_settings


def test_defaults_and_env_overrides(tmp_path: Path) -> None:
    config = TollgateConfig()
    s = static_settings(config, {})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.database_url == "sqlite:///.tollgate/tollgate.db"
    env = {"TOLLGATE_HOST": "0.0.0.0", "TOLLGATE_PORT": "9000", "TOLLGATE_DATA_DIR": str(tmp_path)}
    s = static_settings(config, env)
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.database_url == f"sqlite:///{tmp_path}/tollgate.db"


def test_master_key_generated_once_with_mode_600(tmp_path: Path) -> None:
    config = TollgateConfig()
    settings = static_settings(config, {"TOLLGATE_DATA_DIR": str(tmp_path)})
    key, generated = load_or_create_master_key(config, settings, {})
    assert generated and key.startswith("tg-master-")
    path = tmp_path / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, generated_again = load_or_create_master_key(config, settings, {})
    assert again == key and not generated_again


def test_env_master_key_wins(tmp_path: Path) -> None:
    config = TollgateConfig()
    settings = static_settings(config, {"TOLLGATE_DATA_DIR": str(tmp_path)})
    key, generated = load_or_create_master_key(config, settings, {"TOLLGATE_MASTER_KEY": "tg-env"})
    assert (key, generated) == ("tg-env", False)
    assert not (tmp_path / "master.key").exists()
