"""Model prices and the cost of a request: a built-in table, config overrides, and exact integer nano-dollars.

Prices are USD per million tokens, as providers publish them. Costs are computed in integer nano-dollars
(1e-9 USD) so that sums over millions of ledger rows are exact; ``cost_usd`` is only for display.

Sources of the built-in table (looked up 2026-11-23; verify before relying on them for invoicing):

- OpenAI: the official pricing page (developers.openai.com/api/docs/pricing), as quoted on
  tokenmix.ai/blog/openai-api-cost-2026-gpt-5-5-5-4-nano-batch (verified 2026-06-04),
  morphllm.com/openai-api-pricing (June 2026), nicolalazzari.ai (GPT-5.2) and deploybase.ai (March 2026).
- Anthropic: platform.claude.com/docs/en/about-claude/pricing (model pricing table, 2026).
- Google: ai.google.dev/gemini-api/docs/pricing, as quoted on morphllm.com/gemini-api-pricing and
  deploybase.ai/articles/gemini-api-pricing (March 2026); cache hits are billed at 10 % of input.

Standard (not batch, not priority) rates. Anthropic cache *writes* (1.25x input) are not reported
separately in the canonical usage and are priced as plain input.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.config.pricing import ModelPriceConfig, PricingConfig
from tollgate.providers.base import Deployment
from tollgate.wire.openai import Usage

log = logging.getLogger("tollgate.pricing")

NANOS_PER_USD = 1_000_000_000

# Provider types that never cost money: local models and the built-in demo.
FREE_PROVIDER_TYPES = frozenset({"ollama", "demo"})

# Suffixes that name a dated snapshot of a model; stripped one at a time to find the undated price.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|\d{3}|latest|(?:preview|exp)(?:-\d{2}-\d{2,4})?)$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens (and per request / per image) for one model."""

    input: float
    output: float = 0.0
    cached_input: float | None = None  # None: cache hits cost the full input rate
    per_request: float = 0.0
    per_image: float = 0.0
    long_threshold: int | None = None  # prompts above this many tokens use the long_* rates
    long_input: float = 0.0
    long_output: float = 0.0
    long_cached_input: float | None = None

    @classmethod
    def from_config(cls, cfg: ModelPriceConfig) -> ModelPrice:
        lc = cfg.long_context
        return cls(
            input=cfg.input,
            output=cfg.output,
            cached_input=cfg.cached_input,
            per_request=cfg.per_request,
            per_image=cfg.per_image,
            long_threshold=lc.threshold_tokens if lc else None,
            long_input=lc.input if lc else 0.0,
            long_output=lc.output if lc else 0.0,
            long_cached_input=lc.cached_input if lc else None,
        )

    def cost_nanos(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, images: int = 0) -> int:
        """Exact cost in nano-dollars. ``prompt_tokens`` includes the cached ones (OpenAI's convention)."""
        prompt_tokens = max(prompt_tokens, 0)
        cached = min(max(cached_tokens, 0), prompt_tokens)
        rate_in, rate_out, rate_cached = self.input, self.output, self.cached_input
        if self.long_threshold is not None and prompt_tokens > self.long_threshold:
            rate_in, rate_out, rate_cached = self.long_input, self.long_output, self.long_cached_input
        if rate_cached is None:
            rate_cached = rate_in
        # USD per million tokens x 1000 = nano-dollars per token.
        per_tokens = (prompt_tokens - cached) * rate_in + cached * rate_cached + max(completion_tokens, 0) * rate_out
        fixed = self.per_request + max(images, 0) * self.per_image
        return round(per_tokens * 1000 + fixed * NANOS_PER_USD)


FREE = ModelPrice(0.0, 0.0, 0.0)


def _p(inp: float, cached: float | None, out: float) -> ModelPrice:
    return ModelPrice(input=inp, output=out, cached_input=cached)


# Keyed by the model id the provider knows (undated). Embeddings have input prices only.
BUILTIN_PRICES: Mapping[str, ModelPrice] = {
    # OpenAI
    "gpt-5.5": _p(5.00, 0.50, 30.00),
    "gpt-5.5-pro": _p(30.00, None, 180.00),
    "gpt-5.4": _p(2.50, 0.25, 15.00),
    "gpt-5.4-pro": _p(30.00, None, 180.00),
    "gpt-5.4-mini": _p(0.75, 0.075, 4.50),
    "gpt-5.4-nano": _p(0.20, 0.02, 1.25),
    "gpt-5.2": _p(1.75, 0.175, 14.00),
    "gpt-5.2-pro": _p(21.00, None, 168.00),
    "gpt-5.1": _p(1.25, 0.125, 10.00),
    "gpt-5": _p(1.25, 0.125, 10.00),
    "gpt-5-pro": _p(15.00, None, 120.00),
    "gpt-5-mini": _p(0.25, 0.025, 2.00),
    "gpt-5-nano": _p(0.05, 0.005, 0.40),
    "gpt-4.1": _p(2.00, 0.50, 8.00),
    "gpt-4.1-mini": _p(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.025, 0.40),
    "gpt-4o": _p(2.50, 1.25, 10.00),
    "gpt-4o-mini": _p(0.15, 0.075, 0.60),
    "o3": _p(2.00, 0.50, 8.00),
    "o3-mini": _p(1.10, 0.55, 4.40),
    "o4-mini": _p(1.10, 0.275, 4.40),
    "o1": _p(15.00, 7.50, 60.00),
    "text-embedding-3-small": _p(0.02, None, 0.0),
    "text-embedding-3-large": _p(0.13, None, 0.0),
    "text-embedding-ada-002": _p(0.10, None, 0.0),
    # Anthropic (cache hits at 10 % of input)
    "claude-opus-4-7": _p(5.00, 0.50, 25.00),
    "claude-opus-4-6": _p(5.00, 0.50, 25.00),
    "claude-opus-4-5": _p(5.00, 0.50, 25.00),
    "claude-opus-4-1": _p(15.00, 1.50, 75.00),
    "claude-opus-4-0": _p(15.00, 1.50, 75.00),
    "claude-opus-4": _p(15.00, 1.50, 75.00),
    "claude-sonnet-4-6": _p(3.00, 0.30, 15.00),
    "claude-sonnet-4-5": _p(3.00, 0.30, 15.00),
    "claude-sonnet-4-0": _p(3.00, 0.30, 15.00),
    "claude-sonnet-4": _p(3.00, 0.30, 15.00),
    "claude-3-7-sonnet": _p(3.00, 0.30, 15.00),
    "claude-haiku-4-5": _p(1.00, 0.10, 5.00),
    "claude-3-5-haiku": _p(0.80, 0.08, 4.00),
    # Google Gemini (2.5 Pro doubles input and adds 50 % on output above 200k prompt tokens)
    "gemini-2.5-pro": ModelPrice(
        input=1.25,
        output=10.00,
        cached_input=0.125,
        long_threshold=200_000,
        long_input=2.50,
        long_output=15.00,
        long_cached_input=0.25,
    ),
    "gemini-2.5-flash": _p(0.30, 0.03, 2.50),
    "gemini-2.5-flash-lite": _p(0.10, 0.01, 0.40),
    "gemini-2.0-flash": _p(0.10, 0.025, 0.40),
    "gemini-embedding-001": _p(0.15, None, 0.0),
    "text-embedding-004": FREE,  # free of charge on the Gemini API
    # The built-in demo provider
    "tollgate-demo": FREE,
}


def undated(model: str) -> list[str]:
    """The model id and its undated forms, most specific first: ``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``."""
    names = [model]
    if model.startswith("models/"):  # Gemini's resource-style ids
        model = model.removeprefix("models/")
        names.append(model)
    while True:
        shorter = _SNAPSHOT.sub("", model)
        if shorter == model or not shorter:
            return names
        model = shorter
        names.append(model)


class PriceBook:
    """Prices for one config version: overrides first, then free provider types, then the built-in table.

    Lookups are cached per deployment (a bounded dict), so pricing a request costs a dict hit."""

    def __init__(self, config: PricingConfig | None = None, builtin: Mapping[str, ModelPrice] = BUILTIN_PRICES) -> None:
        config = config or PricingConfig()
        self.unknown_model = config.unknown_model
        self._overrides = {name: ModelPrice.from_config(p) for name, p in config.models.items()}
        self._builtin = builtin
        self._cache: dict[tuple[str, str, str], ModelPrice | None] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def reconfigure(self, config: PricingConfig) -> None:
        """Take the prices of a reloaded config; every holder of this book sees them at its next lookup."""
        overrides = {name: ModelPrice.from_config(p) for name, p in config.models.items()}
        with self._lock:
            self.unknown_model = config.unknown_model
            self._overrides = overrides
            self._cache = {}

    def lookup(self, provider: str, provider_type: str, model: str) -> ModelPrice | None:
        """The price of ``model`` at a configured provider (name and type), or ``None`` when unknown."""
        key = (provider, provider_type, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._find(provider, provider_type, model)
        if len(self._cache) < 10_000:  # bounded: model names can come from clients
            self._cache[key] = price
        return price

    def _find(self, provider: str, provider_type: str, model: str) -> ModelPrice | None:
        names = undated(model)
        for name in names:
            for key in (f"{provider}/{name}", f"{provider_type}/{name}", name):
                found = self._overrides.get(key)
                if found is not None:
                    return found
        if provider_type in FREE_PROVIDER_TYPES:
            return FREE
        for name in names:
            found = self._builtin.get(name)
            if found is not None:
                return found
        return None

    def price_of(self, deployment: Deployment) -> ModelPrice | None:
        return self.lookup(deployment.provider, deployment.provider_type, deployment.model)

    def cost_nanos(self, deployment: Deployment | None, usage: Usage | None, images: int = 0) -> int:
        """The cost of a finished request; 0 when nothing was dispatched or the model has no price
        (the latter is logged once per model: ``unknown_model: block`` stops such requests in ADMIT)."""
        if deployment is None or usage is None:
            return 0
        price = self.price_of(deployment)
        if price is None:
            self._warn_unknown(deployment)
            return 0
        return price.cost_nanos(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, images)

    def cost_usd(self, deployment: Deployment | None, usage: Usage | None, images: int = 0) -> float:
        return self.cost_nanos(deployment, usage, images) / NANOS_PER_USD

    def estimate_nanos(self, deployment: Deployment, prompt_tokens: int, max_output_tokens: int) -> int | None:
        """Worst-case cost before the call (no cache discount), for budget reservations; ``None`` if unpriced."""
        price = self.price_of(deployment)
        if price is None:
            return None
        return price.cost_nanos(prompt_tokens, max_output_tokens)

    def _warn_unknown(self, deployment: Deployment) -> None:
        label = deployment.label
        with self._lock:
            if label in self._warned:
                return
            self._warned.add(label)
        log.warning(
            "no price for model %s (provider type %s): its requests are recorded at cost 0. Add it under "
            "pricing.models in the config, or set pricing.unknown_model: block to refuse unpriced models.",
            label,
            deployment.provider_type,
        )
