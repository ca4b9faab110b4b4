"""The demo adapter: the OpenAI adapter pointed at ``demo://local``, which the transport serves in-process."""

from __future__ import annotations

from dataclasses import replace

from tollgate.providers.base import Deployment
from tollgate.providers.openai.adapter import OpenAIAdapter

DEMO_BASE_URL = "demo://local/v1"


class DemoAdapter(OpenAIAdapter):
    """Labelled as a demo everywhere it answers; exists so every feature can be tried without a provider."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(replace(deployment, base_url=DEMO_BASE_URL))
