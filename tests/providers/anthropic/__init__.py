"""Anthropic adapter tests: golden translation cases and error mapping."""
