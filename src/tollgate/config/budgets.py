"""Config of USD budgets (the ``budgets`` section): how reservations are sized, stream cutting, alerts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class BudgetAlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0],
        description="Fractions of each budget at which an alert fires, once per budget, period and threshold "
        "(0.5 = 50 %). An empty list turns threshold alerts off.",
    )
    webhook_url: str | None = Field(
        None,
        description="Where alerts are POSTed as JSON (unset: alerts are only logged, as the tollgate.budget "
        "logger's warnings).",
    )
    webhook_secret: str | None = Field(
        None,
        description="HMAC-SHA256 key: each webhook carries X-Tollgate-Signature, the hex digest of the body. "
        "Use ${ENV_VAR}; never write a secret in the file.",
    )
    webhook_retries: int = Field(
        5, ge=0, le=20, description="Retries of a webhook that failed (connection error or non-2xx), with backoff."
    )
    webhook_backoff_seconds: float = Field(
        0.5, gt=0, le=60, description="First retry delay; it doubles on every retry (capped at 60 s)."
    )
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Timeout of one webhook delivery attempt.")
    burn_rate_factor: float | None = Field(
        3.0,
        gt=1,
        description="Alert when the spend of the last hour exceeds this many times the average hourly spend of "
        "the period so far (at most once an hour per budget); null turns burn-rate alerts off.",
    )

    @field_validator("thresholds")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        for t in value:
            if not 0 < t <= 10:
                raise ValueError(f"threshold {t} must be a fraction of the budget above 0 (1.0 = 100 %)")
        return sorted(set(value))


class BudgetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stream_reservation: Literal["estimate", "worst_case"] = Field(
        "estimate",
        description="What a stream reserves before the call: 'estimate' = the prompt plus "
        "stream_reserve_output_tokens, topped up in steps while it streams and cut at the budget "
        "(needs cut_streams_at_cap); 'worst_case' = the prompt plus max_tokens (or default_max_output_tokens), "
        "as non-streaming requests always do.",
    )
    cut_streams_at_cap: bool = Field(
        True,
        description="End a stream cleanly (finish_reason 'length', Anthropic stop_reason 'max_tokens') when its "
        "running cost would pass what it reserved and no more budget can be reserved. Off: streams reserve "
        "their worst case like other requests.",
    )
    default_max_output_tokens: int = Field(
        4096,
        ge=0,
        description="Output tokens priced into the worst case of a request that sets no max_tokens.",
    )
    stream_reserve_output_tokens: int = Field(
        1024,
        ge=1,
        description="Output tokens an 'estimate' stream reserves up front, and the size of each top-up step.",
    )
    exceed_status: Literal[402, 403] = Field(
        402, description="HTTP status of a request refused because a budget is used up (402 or 403)."
    )
    alerts: BudgetAlertSettings = Field(
        default_factory=BudgetAlertSettings, description="Soft limits: threshold and burn-rate alerts."
    )
