"""Provider types by name: one line each, imported lazily (a provider is its folder plus one line here)."""

from __future__ import annotations

import importlib
from typing import Protocol

from tollgate.providers.base import Deployment, ProviderAdapter

ADAPTERS: dict[str, str] = {
    "openai": "tollgate.providers.openai.adapter:OpenAIAdapter",
    "openai_compatible": "tollgate.providers.openai.adapter:OpenAICompatibleAdapter",
    "azure": "tollgate.providers.azure.adapter:AzureOpenAIAdapter",
    "anthropic": "tollgate.providers.anthropic.adapter:AnthropicAdapter",
    "gemini": "tollgate.providers.gemini.adapter:GeminiAdapter",
    "ollama": "tollgate.providers.ollama.adapter:OllamaAdapter",
    "demo": "tollgate.providers.demo.adapter:DemoAdapter",
}


class AdapterFactory(Protocol):
    def __call__(self, deployment: Deployment) -> ProviderAdapter: ...


_loaded: dict[str, AdapterFactory] = {}


def adapter_factory(provider_type: str) -> AdapterFactory:
    factory = _loaded.get(provider_type)
    if factory is None:
        module_name, _, attr = ADAPTERS[provider_type].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        _loaded[provider_type] = factory
    return factory


def build_adapter(deployment: Deployment) -> ProviderAdapter:
    return adapter_factory(deployment.provider_type)(deployment)
