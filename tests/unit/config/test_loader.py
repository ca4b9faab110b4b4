"""Config loading: interpolation, validation errors that locate the problem, env-detected providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.config.env import providers_from_env
from tollgate.config.loader import ConfigError, load_config_file, parse_config


def test_interpolation_with_defaults_and_escapes() -> None:
    text = """
providers:
  openai:
    api_key: ${KEY}
    base_url: ${BASE:-https://api.openai.com/v1}
    headers: {x-cost: "$$5"}
"""
    config = parse_config(text, "t.yaml", {"KEY": "sk-1"})
    prov = config.providers["openai"]
    assert prov.api_key == "sk-1"
    assert prov.base_url == "https://api.openai.com/v1"
    assert prov.headers == {"x-cost": "$5"}


def test_empty_variable_uses_default() -> None:
    config = parse_config("providers: {openai: {base_url: '${B:-http://x}'}}", "t", {"B": ""})
    assert config.providers["openai"].base_url == "http://x"


def test_missing_variable_names_the_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  openai:\n    api_key: ${NOPE}\n", "conf.yaml", {})
    message = str(info.value)
    assert "conf.yaml" in message
    assert "providers.openai.api_key" in message and "NOPE" in message


def test_unknown_key_and_bad_value_are_located() -> None:
    text = "server:\n  prot: 80\nproviders:\n  openai:\n    timeouts: {connect: -1}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "conf.yaml", {})
    problems = info.value.problems
    assert any(p.startswith("server.prot: unknown key") for p in problems)
    assert any(p.startswith("providers.openai.timeouts.connect:") and "greater than 0" in p for p in problems)


def test_yaml_syntax_error_gives_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  openai: [\n", "bad.yaml", {})
    assert "line" in str(info.value) and "bad.yaml" in str(info.value)


def test_deployment_must_name_a_known_provider() -> None:
    text = "models:\n  fast:\n    deployments:\n      - {provider: nowhere, model: m}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c", {})
    assert "models.fast.deployments[0].provider" in str(info.value)


def test_custom_provider_name_needs_a_type() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  groq: {base_url: 'http://x'}\n", "c", {})
    assert "providers.groq.type" in str(info.value)
    ok = parse_config("providers:\n  groq: {type: openai_compatible, base_url: 'http://x'}\n", "c", {})
    assert ok.providers["groq"].type == "openai_compatible"


def test_env_providers_may_be_referenced_without_declaring_them() -> None:
    config = parse_config("models:\n  smart:\n    deployments: [{provider: anthropic, model: claude-x}]\n", "c", {})
    assert config.models["smart"].deployments[0].provider == "anthropic"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_file(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value)
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError):
        load_config_file(f)


def test_shipped_examples_are_valid() -> None:
    root = Path(__file__).resolve().parents[3] / "examples"
    files = sorted(root.glob("*.yaml"))
    assert files, "examples/ must ship config files"
    env = {
        name: "x"
        for name in (
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "GEMINI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            "GROQ_API_KEY",
            "TOLLGATE_MASTER_KEY",
        )
    }
    for f in files:
        load_config_file(f, env)


def test_providers_from_env_reads_sdk_variables() -> None:
    found = providers_from_env(
        {
            "OPENAI_API_KEY": "sk-o",
            "OPENAI_BASE_URL": "http://o/v1",
            "ANTHROPIC_API_KEY": "sk-a",
            "GOOGLE_API_KEY": "g",
            "AZURE_OPENAI_API_KEY": "az",
            "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
            "OPENAI_API_VERSION": "2025-01-01",
            "OLLAMA_HOST": "0.0.0.0",
        }
    )
    assert found["openai"].base_url == "http://o/v1" and found["openai"].api_key == "sk-o"
    assert found["anthropic"].base_url == "https://api.anthropic.com"
    assert found["gemini"].api_key == "g"
    assert found["azure"].api_version == "2025-01-01"
    assert found["ollama"].base_url == "http://127.0.0.1:11434"
    assert providers_from_env({}) == {}
    assert providers_from_env({"OLLAMA_HOST": "http://gpu:9999"})["ollama"].base_url == "http://gpu:9999"
    # Azure needs both the key and the endpoint.
    assert "azure" not in providers_from_env({"AZURE_OPENAI_API_KEY": "az"})


def test_unquoted_azure_api_version_is_read_as_text() -> None:
    config = parse_config("providers:\n  az: {type: azure, api_version: 2024-06-01}\n", "c", {})
    assert config.providers["az"].api_version == "2024-06-01"
