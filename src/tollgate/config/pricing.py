"""The ``pricing:`` config section: price overrides per model and what to do with a model that has no price."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    # Same rules as the rest of the config file; defined here so schema.py can import this module.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongContextPriceConfig(_Strict):
    threshold_tokens: int = Field(
        gt=0,
        description="Prompt size (input tokens, cached included) above which the whole request is billed at "
        "these rates, as Gemini 2.5 Pro does above 200,000 tokens.",
    )
    input: float = Field(ge=0, le=10_000, description="USD per million input tokens above the threshold.")
    output: float = Field(ge=0, le=10_000, description="USD per million output tokens above the threshold.")
    cached_input: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="USD per million cached input tokens above the threshold (default: the 'input' rate).",
    )


class ModelPriceConfig(_Strict):
    input: float = Field(ge=0, le=10_000, description="USD per million input (prompt) tokens.")
    output: float = Field(0.0, ge=0, le=10_000, description="USD per million output (completion) tokens.")
    cached_input: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="USD per million input tokens served from the provider's prompt cache "
        "(default: the 'input' rate, i.e. no discount).",
    )
    per_request: float = Field(0.0, ge=0, le=1_000, description="USD charged once per request, on top of tokens.")
    per_image: float = Field(0.0, ge=0, le=1_000, description="USD per image, when the provider reports images.")
    long_context: LongContextPriceConfig | None = Field(
        None, description="Higher rates for prompts above a size threshold (optional)."
    )


class PricingConfig(_Strict):
    models: dict[str, ModelPriceConfig] = Field(
        default_factory=dict,
        description="Prices that override or extend the built-in table, keyed by 'provider/model' "
        "(a configured provider's name, e.g. 'azure-eu/my-gpt4o'), by 'provider_type/model', or by the bare "
        "upstream model id ('gpt-4o'). Dated snapshots ('gpt-4o-2024-08-06') fall back to the undated name.",
    )
    unknown_model: Literal["zero", "block"] = Field(
        "zero",
        description="A model with no price: 'zero' serves it, records cost 0 and logs a warning once per model; "
        "'block' refuses the request with 403 (code model_not_priced) before it goes upstream.",
    )
