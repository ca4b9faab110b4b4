"""Prices: the built-in table, snapshot names, config overrides, exact nano-dollar costs, unknown models."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from tollgate.config.pricing import PricingConfig
from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.policies.pricing import UnpricedModelPolicy
from tollgate.pricing import BUILTIN_PRICES, PriceBook, undated
from tollgate.providers.base import Deployment
from tollgate.routing.resolver import Route
from tollgate.wire.openai import Usage


def dep(model: str, provider_type: str = "openai", provider: str | None = None) -> Deployment:
    return Deployment(provider=provider or provider_type, provider_type=provider_type, model=model, base_url="http://x")


def test_cost_is_exact_nano_dollars_with_cached_input_discounted() -> None:
    book = PriceBook()
    # gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per million tokens; 200 of the 1000 prompt tokens cached.
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200)
    assert book.cost_nanos(dep("gpt-4o-mini"), usage) == 800 * 150 + 200 * 75 + 500 * 600
    assert book.cost_usd(dep("gpt-4o-mini"), usage) == pytest.approx(0.000435)


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-2025-04-16", "o3"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ],
)
def test_dated_snapshots_are_priced_as_their_model(model: str, base: str) -> None:
    assert base in undated(model)
    book = PriceBook()
    ptype = "anthropic" if base.startswith("claude") else "gemini" if "gemini" in base else "openai"
    assert book.price_of(dep(model, ptype)) == BUILTIN_PRICES[base]


def test_variants_are_not_mistaken_for_their_family() -> None:
    book = PriceBook()
    pro = book.price_of(dep("gpt-5.4-pro"))
    assert pro is not None and pro.input == 30.0  # not gpt-5.4's $2.50
    assert book.price_of(dep("gpt-4o-mini-tts")) is None  # a different product, not a snapshot
    assert book.price_of(dep("my-finetune", "openai_compatible")) is None


def test_every_supported_provider_has_current_models_priced() -> None:
    for model in (
        "gpt-5.5",
        "gpt-5.4-mini",
        "gpt-5",
        "gpt-4.1",
        "gpt-4o",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-embedding-001",
    ):
        price = BUILTIN_PRICES[model]
        assert price.input > 0
        assert price.cached_input is None or price.cached_input <= price.input


def test_local_and_demo_models_are_free_not_unknown(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook(PricingConfig(unknown_model="block"))
    usage = Usage(prompt_tokens=10**6, completion_tokens=10**6)
    with caplog.at_level(logging.WARNING, "tollgate.pricing"):
        assert book.cost_nanos(dep("llama3.1:70b", "ollama"), usage) == 0
        assert book.cost_nanos(dep("tollgate-demo", "demo"), usage) == 0
    assert book.price_of(dep("anything", "ollama")) is not None
    assert not caplog.records


def test_config_overrides_by_provider_name_then_type_then_model() -> None:
    config = PricingConfig.model_validate(
        {
            "models": {
                "azure-eu/prod-4o": {"input": 2.75, "output": 11.0},
                "azure/gpt-4o": {"input": 2.6, "output": 10.5},
                "gpt-4o": {"input": 2.4, "output": 9.0, "cached_input": 1.0},
                "vllm-llama": {"input": 0.0, "output": 0.0, "per_request": 0.001},
            }
        }
    )
    book = PriceBook(config)
    one_m = Usage(prompt_tokens=1_000_000, completion_tokens=0)
    assert book.cost_nanos(dep("prod-4o", "azure", "azure-eu"), one_m) == 2_750_000_000
    assert book.cost_nanos(dep("gpt-4o-2024-11-20", "azure", "azure-us"), one_m) == 2_600_000_000
    assert book.cost_nanos(dep("gpt-4o", "openai"), one_m) == 2_400_000_000  # beats the built-in $2.50
    assert book.cost_nanos(dep("vllm-llama", "openai_compatible"), Usage(5, 5)) == 1_000_000
    assert book.cost_nanos(dep("gpt-4o-mini"), one_m) == 150_000_000  # untouched built-in


def test_per_image_and_long_context_rates() -> None:
    config = PricingConfig.model_validate({"models": {"img": {"input": 1.0, "per_image": 0.04}}})
    book = PriceBook(config)
    assert book.cost_nanos(dep("img"), Usage(0, 0), images=3) == 120_000_000
    # gemini-2.5-pro: $1.25 / $10 up to 200k prompt tokens, $2.50 / $15 above, for the whole request.
    pro = dep("gemini-2.5-pro", "gemini")
    assert book.cost_nanos(pro, Usage(200_000, 1000)) == 200_000 * 1250 + 1000 * 10_000
    assert book.cost_nanos(pro, Usage(200_001, 1000)) == 200_001 * 2500 + 1000 * 15_000


def test_estimate_is_the_worst_case_without_cache_discount() -> None:
    book = PriceBook()
    assert book.estimate_nanos(dep("gpt-4o-mini"), 1000, 4096) == 1000 * 150 + 4096 * 600
    assert book.estimate_nanos(dep("unknown-model", "openai_compatible"), 1000, 10) is None


def test_unknown_models_cost_zero_and_warn_once_per_model(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    with caplog.at_level(logging.WARNING, "tollgate.pricing"):
        for _ in range(3):
            assert book.cost_nanos(dep("mystery-1", "openai_compatible"), Usage(100, 100)) == 0
        book.cost_nanos(dep("mystery-2", "openai_compatible"), Usage(1, 1))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "openai_compatible/mystery-1" in warnings[0]
    assert "pricing.unknown_model: block" in warnings[0]


def test_nothing_dispatched_costs_nothing() -> None:
    book = PriceBook()
    assert book.cost_nanos(None, Usage(10, 10)) == 0
    assert book.cost_nanos(dep("gpt-4o"), None) == 0


def test_many_small_costs_sum_exactly() -> None:
    book = PriceBook()
    one = book.cost_nanos(dep("gpt-5-nano"), Usage(7, 3))  # 7 x 50 + 3 x 400 nano-dollars
    assert one == 1550
    assert sum(book.cost_nanos(dep("gpt-5-nano"), Usage(7, 3)) for _ in range(100_000)) == 155_000_000


@pytest.mark.parametrize(
    "bad",
    [
        {"models": {"x": {"input": -1}}},
        {"models": {"x": {"input": 1, "colour": "red"}}},
        {"models": {"x": {"input": 1e9}}},
        {"unknown_model": "ignore"},
        {"models": {"x": {"input": 1, "long_context": {"threshold_tokens": 0, "input": 1, "output": 1}}}},
    ],
)
def test_bad_pricing_config_is_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PricingConfig.model_validate(bad)


def _ctx() -> RequestContext:
    return RequestContext(request_id="req_1", front_door="openai", endpoint="chat", config_version="v1")


async def test_block_mode_refuses_a_route_with_an_unpriced_candidate() -> None:
    policy = UnpricedModelPolicy(PriceBook(PricingConfig(unknown_model="block")))
    priced = Route("gpt-4o-mini", (dep("gpt-4o-mini"),), False)
    await policy.admit(_ctx(), priced)
    mixed = Route("smart", (dep("gpt-4o"), dep("mystery", "openai_compatible", "local")), True)
    with pytest.raises(PermissionDeniedError) as caught:
        await policy.admit(_ctx(), mixed)
    err = caught.value
    assert err.status == 403
    assert err.code == "model_not_priced"
    assert "'smart'" in err.message and "local/mystery" in err.message


async def test_zero_mode_lets_unpriced_models_through() -> None:
    policy = UnpricedModelPolicy(PriceBook())
    await policy.admit(_ctx(), Route("mystery", (dep("mystery", "openai_compatible"),), False))
