"""Config of rate limiting (the ``rate_limits`` section): where counters live and how reservations are sized."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    counter_url: str | None = Field(
        None,
        description="Where rate-limit counters live: unset (or memory://) for in-process counters, exact for one "
        "gateway process; redis://host:6379/0 (or rediss://) so every replica enforces one global limit. The same "
        "Redis carries key revocations and other cache invalidations between replicas.",
    )
    fail_open: bool = Field(
        True,
        description="When Redis cannot be reached: true = keep serving with per-process limits (logged as a "
        "warning once a minute and counted); false = refuse rate-limited requests with 503 until Redis is back.",
    )
    default_max_output_tokens: int = Field(
        1024,
        ge=0,
        description="Output tokens reserved against token limits for a request that sets no max_tokens; the "
        "reservation is settled to the real usage when the request ends.",
    )
    window_seconds: int = Field(
        60,
        ge=1,
        le=86_400,
        description="Length of the rolling window of the rpm/tpm limits. 60 makes them per minute, as named.",
    )
    parallel_lease_seconds: int = Field(
        900,
        ge=1,
        description="A parallel-request slot whose request never finished (a replica crashed) is freed after "
        "this long. Requests that run longer than this stop counting against max_parallel.",
    )
    redis_timeout_seconds: float = Field(
        0.5,
        gt=0,
        description="Connect and read timeout for Redis; past it, Redis counts as unreachable (see fail_open).",
    )
    key_prefix: str = Field(
        "tollgate:rl:",
        min_length=1,
        description="Prefix of every Redis key of the rate limiter, to share one Redis between deployments.",
    )
