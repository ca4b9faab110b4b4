"""Provider defaults shared by config detection and adapters."""

DEFAULT_AZURE_API_VERSION = "2024-10-21"
ANTHROPIC_VERSION = "2023-06-01"
