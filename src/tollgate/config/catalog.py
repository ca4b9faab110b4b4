"""The built-in model catalog: which provider type serves a bare model name such as ``gpt-4o-mini``."""

from __future__ import annotations

# Listed in /v1/models for each configured provider of that type; not a limit on what can be called.
KNOWN_MODELS: dict[str, tuple[str, ...]] = {
    "openai": (
        "gpt-5.5",
        "gpt-5.4",
        "gpt-5.4-mini",
        "gpt-5.4-nano",
        "gpt-5",
        "gpt-5-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
    ),
    "anthropic": (
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-opus-4-5",
    ),
    "gemini": (
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "text-embedding-004",
        "gemini-embedding-001",
    ),
    "demo": ("tollgate-demo",),
}

# Bare names resolve by prefix; the first matching rule wins.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-3", "openai"),
    ("text-embedding-ada", "openai"),
    ("davinci", "openai"),
    ("babbage", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("text-embedding-004", "gemini"),
    ("tollgate-demo", "demo"),
)


def provider_type_for(model: str) -> str | None:
    """The provider type that serves a bare model name, or ``None`` if the catalog does not know it."""
    for prefix, ptype in _PREFIXES:
        if model.startswith(prefix):
            return ptype
    return None
