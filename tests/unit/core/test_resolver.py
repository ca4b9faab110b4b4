"""Model resolution: logical models, provider/model, the catalog, and helpful 404s."""

from __future__ import annotations

import pytest

from tollgate.config.loader import parse_config
from tollgate.core.snapshot import Snapshot
from tollgate.errors import ModelNotFoundError
from tollgate.policies.model_access import model_allowed


def _snap(yaml_text: str = "", env: dict[str, str] | None = None) -> Snapshot:
    env = env or {}
    return Snapshot(parse_config(yaml_text, "t", env), env)


def test_logical_model_keeps_deployment_order() -> None:
    snap = _snap(
        "models:\n  fast:\n    deployments: [{provider: openai, model: a}, {provider: demo, model: b}]\n",
        {"OPENAI_API_KEY": "k"},
    )
    route = snap.resolve("fast")
    assert route.logical and [d.label for d in route.candidates] == ["openai/a", "demo/b"]


def test_provider_slash_model_and_catalog_names() -> None:
    snap = _snap("", {"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "a"})
    assert snap.resolve("openai/gpt-x").candidates[0].model == "gpt-x"
    assert snap.resolve("gpt-4o-mini").candidates[0].provider == "openai"
    assert snap.resolve("claude-haiku-4-5").candidates[0].provider == "anthropic"
    # Model ids with slashes after the provider survive (e.g. Together's org/model ids).
    assert snap.resolve("openai/meta-llama/Llama-3-8b").candidates[0].model == "meta-llama/Llama-3-8b"


def test_catalog_name_without_its_provider_explains_how_to_enable_it() -> None:
    with pytest.raises(ModelNotFoundError, match="set ANTHROPIC_API_KEY"):
        _snap().resolve("claude-haiku-4-5")


def test_unknown_provider_and_model() -> None:
    snap = _snap()
    with pytest.raises(ModelNotFoundError, match="no provider named 'acme'"):
        snap.resolve("acme/model")
    with pytest.raises(ModelNotFoundError, match="/v1/models"):
        snap.resolve("mystery")


def test_demo_is_always_available_and_credentials_come_from_config() -> None:
    snap = _snap("providers:\n  openai: {api_key: sk-file}\n", {"OPENAI_API_KEY": "sk-env"})
    assert snap.resolve("demo/tollgate-demo").candidates[0].provider_type == "demo"
    assert snap.resolve("openai/x").candidates[0].api_key == "sk-file"  # the file wins over env
    assert "sk-file" not in repr(snap.resolve("openai/x").candidates[0])


def test_allow_list_patterns() -> None:
    assert model_allowed((), "anything")
    assert model_allowed(("gpt-4o*",), "gpt-4o-mini")
    assert model_allowed(("gpt-4o*",), "openai/gpt-4o-mini")
    assert not model_allowed(("gpt-4o*",), "gpt-4.1")
    assert model_allowed(("openai/*",), "openai/o3")
    assert not model_allowed(("openai/*",), "azure/o3")
