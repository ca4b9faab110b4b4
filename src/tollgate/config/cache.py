"""Config of the response cache (the ``cache`` section): on/off, TTL, size, tenant scope, per-model/team overrides."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CacheScope = Literal["org", "team", "key", "global"]
EmbeddingsRuntime = Literal["auto", "onnxruntime", "numpy"]
Embedder = Literal["minilm", "provider"]
DEFAULT_SEMANTIC_THRESHOLD = 0.85  # from tests/cache_eval: precision 0.989, recall 0.71 (docs/caching.md)


class CacheModelOverride(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = Field(None, description="Cache this model's answers; unset: the section's `enabled`.")
    ttl_seconds: int | None = Field(None, gt=0, description="Seconds an answer of this model stays cached.")
    cache_nondeterministic: bool | None = Field(
        None, description="Also cache this model's sampled answers (temperature > 0, or unset, without a seed)."
    )
    semantic: bool | None = Field(None, description="Semantic lookups for this model; unset: `semantic.enabled`.")
    semantic_threshold: float | None = Field(
        None, ge=0.5, le=1.0, description="Similarity a semantic hit needs for this model; unset: `semantic.threshold`."
    )


class CacheTeamOverride(BaseModel):
    """A team's own cache settings; each field set wins over the model's and the section's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = Field(
        None, description="Cache this team's requests (exact and semantic); unset: the model's, else `enabled`."
    )
    ttl_seconds: int | None = Field(None, gt=0, description="Seconds this team's answers stay cached.")
    cache_nondeterministic: bool | None = Field(
        None, description="Cache this team's requests with temperature > 0 and no seed; unset: the model's/section's."
    )
    semantic: bool | None = Field(
        None, description="Semantic lookups for this team's requests; wins over the model's and the section's."
    )
    semantic_threshold: float | None = Field(
        None,
        ge=0.5,
        le=1.0,
        description="Similarity a semantic hit needs for this team; wins over the model's `semantic_threshold` "
        "and `semantic.threshold`.",
    )


class SemanticCacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description="Also answer requests whose last user message is similar (not identical) to a cached one, "
        "everything else being equal (docs/caching.md). Needs the `semantic` extra and the MiniLM model package.",
    )
    threshold: float = Field(
        DEFAULT_SEMANTIC_THRESHOLD,
        ge=0.5,
        le=1.0,
        description="Cosine similarity a cached message needs to be served; higher is stricter. The default is "
        "measured for minilm; with embedder provider, measure your model's (docs/caching.md).",
    )
    runtime: EmbeddingsRuntime = Field(
        "auto", description="Embedding runtime: onnxruntime (fast), numpy (no onnxruntime), or auto (the first found)."
    )
    threads: int = Field(1, ge=1, le=64, description="Threads of one embedding (onnxruntime).")
    max_entries: int = Field(100_000, gt=0, description="Vectors in each replica's index (least recently used go).")
    model_cache_dir: str | None = Field(
        None, description="Folder for the ONNX graph built once from the model's weights; unset: <data_dir>/embeddings."
    )
    embedder: Embedder = Field(
        "minilm",
        description="What computes the vectors: minilm (offline, in the gateway) or provider (the embeddings "
        "model `embedding_model`, called through this gateway's own routing and provider adapters).",
    )
    embedding_model: str | None = Field(
        None,
        description="With embedder provider: the model alias (in `models:`, or provider/model) serving embeddings.",
    )
    embedding_timeout_seconds: float = Field(
        2.0, gt=0, le=60, description="With embedder provider: past this the lookup is a miss (counted)."
    )
    embedding_max_chars: int = Field(
        8000,
        gt=0,
        description="With embedder provider: longer messages are never compared (the model would truncate them).",
    )

    @model_validator(mode="after")
    def _provider_needs_a_model(self) -> Self:
        if self.embedder == "provider" and not self.embedding_model:
            raise ValueError("cache.semantic.embedder 'provider' needs embedding_model (a model alias)")
        return self


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="Serve repeated identical requests from the exact cache. On by default, but only for "
        "deterministic requests (temperature 0, or a seed): replaying one sampled answer would change what "
        "clients asked for (see cache_nondeterministic, docs/caching.md).",
    )
    ttl_seconds: int = Field(3600, gt=0, description="Seconds a cached answer is served; per request via metadata.")
    max_entries: int = Field(10_000, gt=0, description="In-process cache: entries kept (least recently used go).")
    max_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="In-process cache: bytes of stored answers kept (least recently used go)."
    )
    max_entry_bytes: int = Field(1024 * 1024, gt=0, description="Answers larger than this are not cached.")
    scope: CacheScope = Field(
        "org",
        description="Who shares entries: org (default), team, key, or global (only for public content). A caller "
        "without the chosen scope (e.g. a key without an org) falls back to its key.",
    )
    cache_nondeterministic: bool = Field(
        False,
        description="Also cache requests with temperature > 0 (or unset: providers default to 1) and no seed.",
    )
    url: str | None = Field(
        None,
        description="Where entries live: unset uses rate_limits.counter_url (in-process when that is unset); "
        "memory:// for in-process; redis://host:6379/0 to share entries between replicas.",
    )
    key_prefix: str = Field("tollgate:cache:", min_length=1, description="Prefix of every Redis key of the cache.")
    redis_timeout_seconds: float = Field(
        0.2, gt=0, description="Redis timeout; past it the request is answered as a miss and not stored."
    )
    semantic: SemanticCacheSettings = Field(
        default_factory=SemanticCacheSettings, description="The semantic cache (off by default): docs/caching.md."
    )
    models: dict[str, CacheModelOverride] = Field(
        default_factory=dict, description="Overrides per requested model name (enabled, ttl_seconds, ...)."
    )
    teams: dict[str, CacheTeamOverride] = Field(
        default_factory=dict,
        description="Semantic-cache overrides per team id (semantic, semantic_threshold); a team's setting "
        "wins over the model's, which wins over `semantic` (docs/caching.md).",
    )
