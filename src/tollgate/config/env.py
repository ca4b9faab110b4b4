"""Zero-config providers: read the same environment variables the providers' own SDKs read."""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.config.schema import ProviderConfig
from tollgate.providers.env_defaults import DEFAULT_AZURE_API_VERSION

# The provider names env detection can create; config files may reference them without declaring them.
ENV_PROVIDER_NAMES = frozenset({"openai", "anthropic", "gemini", "azure", "ollama"})


def _ollama_url(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    # OLLAMA_HOST may be a bare "host" or "0.0.0.0"; the server's default port is 11434.
    scheme, _, rest = host.partition("://")
    if ":" not in rest.split("/", 1)[0]:
        rest = rest.replace("/", ":11434/", 1) if "/" in rest else rest + ":11434"
    if rest.startswith("0.0.0.0"):
        rest = "127.0.0.1" + rest[len("0.0.0.0") :]
    return f"{scheme}://{rest}"


def providers_from_env(env: Mapping[str, str]) -> dict[str, ProviderConfig]:
    """Provider configs for every provider whose standard variables are set (values are never logged)."""
    found: dict[str, ProviderConfig] = {}
    if env.get("OPENAI_API_KEY"):
        found["openai"] = ProviderConfig(
            type="openai",
            api_key=env["OPENAI_API_KEY"],
            base_url=env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        )
    if env.get("ANTHROPIC_API_KEY"):
        found["anthropic"] = ProviderConfig(
            type="anthropic",
            api_key=env["ANTHROPIC_API_KEY"],
            base_url=env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
        )
    gemini_key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
    if gemini_key:
        found["gemini"] = ProviderConfig(
            type="gemini",
            api_key=gemini_key,
            base_url=env.get("GOOGLE_GEMINI_BASE_URL") or "https://generativelanguage.googleapis.com",
        )
    if env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT"):
        found["azure"] = ProviderConfig(
            type="azure",
            api_key=env["AZURE_OPENAI_API_KEY"],
            base_url=env["AZURE_OPENAI_ENDPOINT"],
            api_version=env.get("OPENAI_API_VERSION") or DEFAULT_AZURE_API_VERSION,
        )
    if env.get("OLLAMA_HOST"):
        found["ollama"] = ProviderConfig(type="ollama", base_url=_ollama_url(env["OLLAMA_HOST"]))
    return found
