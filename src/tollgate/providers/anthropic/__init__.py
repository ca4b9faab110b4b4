"""Anthropic Messages API: translation between the canonical (OpenAI) shapes and ``/v1/messages``."""
