"""The YAML config file as pydantic models: every key described, unknown keys rejected."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tollgate.config.budgets import BudgetSettings
from tollgate.config.cache import CacheSettings
from tollgate.config.guardrails import GuardrailsConfig
from tollgate.config.limits import RateLimitSettings
from tollgate.config.pricing import PricingConfig
from tollgate.config.routing_rules import ResidencyConfig, RuleConfig, rule_problems
from tollgate.config.secrets import SecretsConfig
from tollgate.config.sso import SsoConfig
from tollgate.secrets.store import SecretStore

RoutingStrategy = Literal["priority", "weighted", "least_latency", "lowest_cost", "least_busy"]
ProviderType = Literal["openai", "openai_compatible", "azure", "anthropic", "gemini", "ollama", "demo"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutsConfig(_Strict):
    connect: float = Field(10.0, gt=0, description="Seconds to establish the TCP/TLS connection to the provider.")
    read: float = Field(
        120.0,
        gt=0,
        description="Seconds to wait for the first response byte, and for each next chunk of a stream "
        "(a stream that stalls longer is cut with a clean error event).",
    )
    total: float = Field(600.0, gt=0, description="Seconds for the whole non-streaming request.")
    first_token: float | None = Field(
        None,
        gt=0,
        description="Streams: seconds from sending the request to the first content chunk, however many "
        "keep-alive bytes arrive meanwhile; past it the next deployment is tried. Unset: only 'read' applies.",
    )


class DeploymentTimeoutsConfig(_Strict):
    connect: float | None = Field(None, gt=0, description="Overrides the provider's timeouts.connect.")
    read: float | None = Field(None, gt=0, description="Overrides the provider's timeouts.read.")
    total: float | None = Field(None, gt=0, description="Overrides the provider's timeouts.total.")
    first_token: float | None = Field(None, gt=0, description="Overrides the provider's timeouts.first_token.")


class ProviderConfig(_Strict):
    type: ProviderType | None = Field(
        None,
        description="Wire format of this provider. Defaults to the provider's name when that is a known type.",
    )
    api_key: str | None = Field(
        None,
        description="The provider's API key. Use ${ENV_VAR} interpolation; never write a key in the file.",
    )
    base_url: str | None = Field(
        None,
        description="Base URL. OpenAI-style providers include the version path (https://api.openai.com/v1); "
        "Anthropic, Gemini and Ollama take the host root; Azure takes the resource endpoint.",
    )
    api_version: str | None = Field(None, description="Azure OpenAI api-version query parameter.")

    @field_validator("api_version", mode="before")
    @classmethod
    def _date_as_text(cls, value: object) -> object:
        # YAML reads an unquoted 2024-10-21 as a date; the API wants the text.
        return value.isoformat() if isinstance(value, date) else value

    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent to this provider.")
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig, description="Timeouts for calls to this provider.")
    drop_unsupported_params: bool | None = Field(
        None,
        description="Drop request parameters this provider cannot honour instead of answering 400. "
        "Defaults to the global setting.",
    )
    models: list[str] = Field(
        default_factory=list, description="Model ids to list in /v1/models for this provider (informational)."
    )


class DeploymentConfig(_Strict):
    provider: str = Field(
        description="Name of a provider declared under 'providers' (or detected from the environment)."
    )
    model: str = Field(description="The model id the provider knows (for Azure: the deployment name).")
    weight: float = Field(
        1.0, gt=0, description="Share of traffic under the 'weighted' strategy, relative to the other deployments."
    )
    priority: int = Field(
        0,
        description="Tier: lower tiers are tried first under every strategy; the strategy orders within a tier.",
    )
    tags: list[str] = Field(
        default_factory=list, description="Free labels that routing rules can require (action.tags)."
    )
    region: str | None = Field(
        None, description="Where this deployment runs (e.g. 'eu'): what routing rules and data residency check."
    )
    max_concurrency: int | None = Field(
        None, ge=1, description="Requests in flight to this deployment at once; when reached it is skipped."
    )
    timeouts: DeploymentTimeoutsConfig | None = Field(
        None, description="Timeouts of this deployment; a key left out keeps the provider's value."
    )


class SplitConfig(_Strict):
    sticky: Literal["user", "key", "none"] = Field(
        "none",
        description="Which callers keep their arm: user (the request's end user: OpenAI 'user' or Anthropic "
        "metadata.user_id, else the caller's user, else its key), key (the API key), or none (a fresh weighted "
        "draw per request). A sticky caller gets the same arm while the arms and weights are unchanged.",
    )


class ShadowConfig(_Strict):
    deployment: str = Field(
        description="The candidate, as provider/model (the provider must be declared or detected): a sampled "
        "share of this model's requests is also sent there, in the background, and compared."
    )
    sample: float = Field(0.1, gt=0, le=1, description="Share of the model's chat requests mirrored (0 < sample <= 1).")
    max_concurrency: int = Field(
        4,
        ge=1,
        le=1000,
        description="Shadow calls in flight at once (per process); a sampled request beyond it is dropped, "
        "never queued.",
    )

    @field_validator("deployment")
    @classmethod
    def _address(cls, value: str) -> str:
        provider, sep, model = value.partition("/")
        if not sep or not provider or not model:
            raise ValueError(f"{value!r} must be provider/model")
        return value


class ModelConfig(_Strict):
    deployments: list[DeploymentConfig] = Field(
        min_length=1,
        description="Where this logical model is served, in order of preference: "
        "the next one is tried when one fails with a retryable error before any byte reached the client.",
    )
    strategy: RoutingStrategy = Field(
        "priority",
        description="How deployments are ordered within a priority tier: priority (config order), weighted "
        "(random by weight), least_latency, lowest_cost or least_busy (docs/routing.md).",
    )
    split: SplitConfig | None = Field(
        None,
        description="Traffic split (A/B): each request is assigned one deployment of the first priority tier "
        "(its arm) by weight, tried first; the others remain fallbacks. The arm is recorded in metrics and the "
        "ledger (tag tollgate_arm). See docs/routing.md.",
    )
    shadow: ShadowConfig | None = Field(
        None,
        description="Shadow traffic: mirror a sampled share of this model's chat requests to a candidate "
        "deployment in the background, never affecting the client; its cost is recorded apart and never "
        "charged to the caller (docs/routing.md).",
    )
    fallback_on: list[Literal["context_window", "content_policy"]] = Field(
        default_factory=list,
        description="Also move on to the next deployment when one refuses the request as longer than its context "
        "window (list a larger-context deployment after it) or by its content policy. Other 4xx errors are "
        "the caller's to fix and are answered at once.",
    )
    description: str | None = Field(None, description="Free text for the people who maintain this config.")


class RetryConfig(_Strict):
    max_retries: int = Field(
        0,
        ge=0,
        le=10,
        description="Retries of the same deployment per request (after a backoff) before falling back to the "
        "next candidate. Fallbacks to other candidates need no retries.",
    )
    backoff_base: float = Field(0.1, gt=0, description="Seconds: the first backoff's upper bound (doubles per retry).")
    backoff_max: float = Field(2.0, gt=0, description="Seconds: the largest backoff.")
    jitter: bool = Field(
        True, description="Full jitter: wait a uniform random time up to the backoff (else the backoff itself)."
    )
    retry_after_max: float = Field(
        2.0,
        ge=0,
        description="Seconds: a provider's Retry-After up to this is waited before retrying the same deployment; "
        "a longer one moves on to the next candidate at once.",
    )


class RetryBudgetConfig(_Strict):
    ratio: float = Field(
        0.2, ge=0, description="Extra upstream calls (retries and fallbacks) allowed, as a share of requests."
    )
    window_seconds: float = Field(10.0, gt=0, description="Seconds over which requests and extra calls are counted.")
    min_retries: int = Field(
        3, ge=0, description="Extra calls always allowed per window, so a quiet gateway can still fail over."
    )


class BreakerConfig(_Strict):
    enabled: bool = Field(True, description="Skip deployments whose circuit breaker is open.")
    consecutive_failures: int = Field(5, ge=1, description="Failures in a row that open the breaker.")
    error_rate: float = Field(
        0.5, gt=0, le=1, description="Share of failed calls over the window that opens the breaker."
    )
    min_calls: int = Field(20, ge=1, description="Calls needed in the window before the error rate is considered.")
    window_seconds: float = Field(30.0, gt=0, description="Seconds over which the error rate is measured.")
    open_seconds: float = Field(
        30.0, gt=0, description="Seconds an open breaker waits before letting a probe through (half-open)."
    )
    half_open_probes: int = Field(
        1, ge=1, description="Probe calls let through at once while half-open: a success closes, a failure reopens."
    )


class QueueConfig(_Strict):
    max_wait_seconds: float = Field(
        0.0,
        ge=0,
        le=600,
        description="When every candidate of a request is at max_concurrency, wait up to this many seconds for "
        "a slot in the first one's queue (highest caller metadata 'priority' first) instead of answering 503 at "
        "once. 0 turns queueing off.",
    )
    max_size: int = Field(100, ge=1, description="Requests waiting per deployment; past it, 503 with Retry-After.")


class SharedStateConfig(_Strict):
    enabled: bool = Field(
        True,
        description="Share circuit-breaker transitions and latency averages with the other replicas over the Redis "
        "of rate_limits.counter_url (no effect without a Redis counter_url). See docs/routing.md.",
    )
    interval_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between latency exchanges; another replica's averages are at most about twice this "
        "old when used, and ignored past three times this.",
    )
    key_prefix: str = Field(
        "tollgate:routing:",
        min_length=1,
        description="Prefix of the Redis channel and hashes of the shared routing state (one per fleet).",
    )


class RoutingConfig(_Strict):
    retries: RetryConfig = Field(default_factory=RetryConfig, description="Same-deployment retries and backoff.")
    retry_budget: RetryBudgetConfig = Field(
        default_factory=RetryBudgetConfig,
        description="Caps extra upstream calls so retries and fallbacks cannot amplify an outage.",
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Circuit breaker per deployment.")
    latency_alpha: float = Field(
        0.3, gt=0, le=1, description="Weight of the newest sample in the latency moving averages (least_latency)."
    )
    queue: QueueConfig = Field(
        default_factory=QueueConfig,
        description="Priority queues at max_concurrency: bounded waits, higher caller priority first.",
    )
    rules: list[RuleConfig] = Field(
        default_factory=list,
        description="Routing rules, evaluated in order for every request: pick or restrict the target by header, "
        "caller, tags and request properties (docs/routing.md).",
    )
    residency: ResidencyConfig = Field(
        default_factory=ResidencyConfig,
        description="Data residency: the tag that pins a request to a zone, and which regions comply with each zone.",
    )
    shared_state: SharedStateConfig = Field(
        default_factory=SharedStateConfig,
        description="Breaker state and latency averages shared across replicas over Redis (docs/routing.md).",
    )


class ServerConfig(_Strict):
    host: str = Field("127.0.0.1", description="Interface to listen on (env TOLLGATE_HOST).")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (env TOLLGATE_PORT).")
    data_dir: str = Field(".tollgate", description="Folder for the embedded database and the generated master key.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="Largest request body accepted; larger bodies get 413."
    )
    master_key: str | None = Field(
        None,
        description="The master (admin) key. Prefer env TOLLGATE_MASTER_KEY; when neither is set a key is "
        "generated once and stored in data_dir with mode 600.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_bodies: bool = Field(
        False,
        description="Add the request body the provider saw (after PII masking when the guard is on) and the "
        "answer as the provider wrote it (before placeholders are restored; a streamed answer as its text per "
        "choice) to each access-log line. Off by default; when on, streams go through canonical chunks.",
    )
    log_body_max_bytes: int = Field(
        4096, ge=256, le=1_048_576, description="Each logged body is cut to this many bytes of JSON."
    )
    watch_config: bool = Field(
        False,
        description="Reload the config file when its content changes (providers, models, settings, routing and "
        "pricing apply at once; see docs/configuration.md, Reloading). POST /admin/reload works either way.",
    )
    watch_interval_seconds: float = Field(
        2.0, gt=0, le=3600, description="How often the config file is checked when watch_config is on."
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes serving one port (--workers overrides). More than one needs Redis "
        "(rate_limits.counter_url): limits, budgets and key revocations must be shared (docs/operations.md).",
    )
    shutdown_drain_seconds: float = Field(
        0.0,
        ge=0,
        le=300,
        description="On SIGTERM: seconds during which /health/ready answers 503 'draining' while requests are "
        "still served, so load balancers stop sending before the listener closes.",
    )
    shutdown_grace_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="After the listener closes: seconds in-flight requests and streams get to finish before "
        "they are cut; then the ledger is flushed and the process exits.",
    )


class RetentionConfig(_Strict):
    ledger_days: int | None = Field(
        None,
        ge=1,
        description="Delete spend-ledger rows older than this many days ('tollgate prune'); the daily "
        "aggregates that reports read are kept. None keeps every row.",
    )
    audit_days: int | None = Field(
        None, ge=1, description="Delete audit-log records older than this many days ('tollgate prune')."
    )


class StorageConfig(_Strict):
    database_url: str | None = Field(
        None,
        description="Where keys (and later tenants and the ledger) live: sqlite:///path, or memory:// for tests. "
        "Defaults to sqlite:///<data_dir>/tollgate.db (env TOLLGATE_DATABASE_URL).",
    )
    migrate_on_start: bool = Field(
        True,
        description="Apply pending schema migrations when the gateway starts. When false, a database whose "
        "schema is behind is refused at start: run 'tollgate migrate' (docs/operations.md).",
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig,
        description="How long ledger rows and audit records are kept ('tollgate prune').",
    )


class SettingsConfig(_Strict):
    default_model: str | None = Field(
        None,
        description="Model used by the simple /chat API when the request names none. Defaults to the first "
        "logical model, else a small model of the first configured provider, else the demo model.",
    )
    drop_unsupported_params: bool = Field(
        False,
        description="Default for every provider: drop parameters a provider cannot honour instead of 400.",
    )
    detect_providers_from_env: bool = Field(
        True,
        description="Add providers from the standard SDK environment variables (OPENAI_API_KEY, ...) "
        "when the file does not declare a provider of that name.",
    )


class TracingConfig(_Strict):
    enabled: bool | Literal["auto"] = Field(
        "auto",
        description="OpenTelemetry traces over OTLP/HTTP, configured by the standard OTEL_* variables. auto: on "
        "when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. Needs the 'otel' extra.",
    )


class MetricsConfig(_Strict):
    enabled: bool = Field(True, description="Record Prometheus metrics and serve them at GET /metrics.")
    require_auth: bool = Field(
        False,
        description="Require the master key or an admin key (Authorization: Bearer) to read /metrics. Off by "
        "default: metrics hold counts labelled with team and org ids, no keys, prompts or secrets.",
    )
    key_label: bool = Field(
        False,
        description="Add a 'key' label (the key id) to per-tenant metrics. One series per key: only for "
        "deployments with few keys.",
    )
    user_label: bool = Field(
        False,
        description="Add a 'user' label (the user id) to per-tenant metrics. One series per user: only for "
        "deployments with few users.",
    )
    max_model_labels: int = Field(
        200,
        ge=1,
        description="Distinct requested model names used as the 'model' label; further names are counted "
        "as 'other', so clients cannot grow the number of series without bound.",
    )


class LangfuseConfig(_Strict):
    enabled: bool = Field(False, description="Export each model call as a Langfuse generation (docs/observability.md).")
    host: str = Field("https://cloud.langfuse.com", description="The Langfuse server (cloud or self-hosted).")
    public_key: str | None = Field(None, description="The project's public key (pk-lf-...); use ${VAR}.")
    secret_key: str | None = Field(None, description="The project's secret key (sk-lf-...); use ${VAR}.")
    capture_content: bool = Field(
        False,
        description="Also send the prompt and the answer, as the provider saw them (after PII masking). Off: "
        "model, usage, cost, latency, status and ids only.",
    )
    flush_interval_seconds: float = Field(2.0, gt=0, le=3600, description="Longest wait before a batch is sent.")
    batch_size: int = Field(50, ge=1, le=1000, description="Generations per request to Langfuse (sent when full).")
    max_queue: int = Field(
        10_000, ge=1, description="Generations waiting to be sent at most; further ones are dropped and counted."
    )
    max_retries: int = Field(3, ge=0, le=10, description="Retries of a batch after a network error, 429 or 5xx.")

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> LangfuseConfig:
        if self.enabled and not (self.public_key and self.secret_key):
            raise ValueError("langfuse.enabled needs langfuse.public_key and langfuse.secret_key (use ${VAR})")
        if not self.host.startswith(("http://", "https://")):
            raise ValueError("langfuse.host must be an http:// or https:// URL")
        return self


class TollgateConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig, description="Static settings: read at start.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Static settings: read at start.")
    providers: dict[str, ProviderConfig] = Field(
        default_factory=dict,
        description="Upstream providers by name; models are addressed as <name>/<model>.",
    )
    models: dict[str, ModelConfig] = Field(
        default_factory=dict, description="Logical model names (aliases) clients use, mapped to deployments."
    )
    settings: SettingsConfig = Field(default_factory=SettingsConfig, description="Gateway-wide behaviour.")
    rate_limits: RateLimitSettings = Field(
        default_factory=RateLimitSettings,
        description="Rate limiting: where counters live (in-process or Redis) and how token reservations are sized.",
    )
    pricing: PricingConfig = Field(
        default_factory=PricingConfig,
        description="Model prices (USD per million tokens) over the built-in table; what to do with unpriced models.",
    )
    budgets: BudgetSettings = Field(
        default_factory=BudgetSettings,
        description="USD budgets: how requests reserve cost, cutting streams at the budget, alerts (docs/budgets.md).",
    )
    cache: CacheSettings = Field(default_factory=CacheSettings, description="Exact response cache (docs/caching.md).")
    guardrails: GuardrailsConfig = Field(
        default_factory=GuardrailsConfig,
        description="Guardrails on prompts: PII and secrets masking (docs/guardrails.md).",
    )
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig,
        description="Retries, retry budget, circuit breakers and latency averages (docs/routing.md).",
    )
    tracing: TracingConfig = Field(
        default_factory=TracingConfig,
        description="OpenTelemetry traces: static settings, read at start (docs/observability.md).",
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig,
        description="Prometheus metrics at /metrics: static settings, read at start (docs/observability.md).",
    )
    langfuse: LangfuseConfig = Field(
        default_factory=LangfuseConfig,
        description="Export of generations to Langfuse: static settings, read at start (docs/observability.md).",
    )
    secrets: SecretsConfig = Field(
        default_factory=SecretsConfig,
        description="Secrets from files and HashiCorp Vault (${file:...}, ${vault:...}): refresh and Vault "
        "connection; static settings, read at start (docs/configuration.md#secrets).",
    )
    sso: SsoConfig = Field(
        default_factory=SsoConfig,
        description="OpenID Connect single sign-on for the admin UI: static settings, read at start (docs/ui.md).",
    )
    # The store that resolved this config's secret references (set by the loader; refreshes them).
    _secret_store: SecretStore | None = PrivateAttr(default=None)

    @property
    def secret_store(self) -> SecretStore | None:
        """The store that resolved this config's ``${file:...}``/``${vault:...}`` references (loader-made)."""
        return self._secret_store

    @model_validator(mode="after")
    def _rule_targets(self) -> TollgateConfig:
        problems = rule_problems(self.routing.rules, self.models)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _embedding_model_exists(self) -> TollgateConfig:
        alias = self.cache.semantic.embedding_model
        if self.cache.semantic.embedder == "provider" and alias and "/" not in alias and alias not in self.models:
            raise ValueError(f"cache.semantic.embedding_model {alias!r} is neither in `models:` nor provider/model")
        return self

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if not name or "/" in name:
                raise ValueError(f"provider name {name!r} must be non-empty and contain no '/'")
        return value
