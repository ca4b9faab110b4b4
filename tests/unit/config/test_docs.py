"""docs/configuration.md documents every config key, so the reference cannot drift from the schema."""

from __future__ import annotations

from pathlib import Path
from typing import get_args, get_origin

from pydantic import BaseModel

from tollgate.config.schema import TollgateConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
MAPS = {
    "providers": "providers.<name>",
    "models": "models.<name>",
    "pricing.models": "pricing.models.<model>",
    "cache.models": "cache.models.<model>",
    "cache.teams": "cache.teams.<team>",
    "guardrails.caps.models": "guardrails.caps.models.<model>",
    "guardrails.output_filter.categories": "guardrails.output_filter.categories.<name>",
}


def _paths(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        ann = field.annotation
        args = get_args(ann)
        inner = args[-1] if args else ann  # dict[str, X] and list[X] hold X
        if get_origin(ann) is list:
            path += "[]"
        if path in MAPS:
            path = MAPS[path]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out += _paths(inner, path + ".")
    return out


def test_every_key_is_documented() -> None:
    text = DOC.read_text()
    paths = _paths(TollgateConfig, "")
    assert "providers.<name>.timeouts.read" in paths and "models.<name>.deployments[].model" in paths
    missing = [
        p
        for p in paths
        if f"`{p}`" not in text
        and p not in ("server", "storage", "settings", "rate_limits", "pricing")
        and p not in MAPS
        and p not in MAPS.values()
    ]
    assert not missing, f"undocumented config keys: {missing}"
