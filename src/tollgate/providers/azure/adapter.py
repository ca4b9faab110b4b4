"""Azure OpenAI: ``{endpoint}/openai/deployments/{deployment}/{op}?api-version=…`` with ``api-key``."""

from __future__ import annotations

from urllib.parse import quote

from tollgate.providers.base import Deployment
from tollgate.providers.env_defaults import DEFAULT_AZURE_API_VERSION
from tollgate.providers.openai.adapter import OpenAIAdapter


class AzureOpenAIAdapter(OpenAIAdapter):
    """Same bodies as OpenAI; the deployment name is in the path, so the body's model is informational."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        base = deployment.base_url.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        self._base = f"{base}/openai/deployments/{quote(deployment.model, safe='')}"
        self._query = f"?api-version={quote(deployment.api_version or DEFAULT_AZURE_API_VERSION, safe='')}"

    def _build_headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if deployment.api_key:
            headers["api-key"] = deployment.api_key
        headers.update(deployment.headers)
        return headers

    def _url(self, endpoint: str) -> str:
        return f"{self._base}/{endpoint}{self._query}"
