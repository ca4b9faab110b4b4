"""The compiled config snapshot: built once per config version, frozen, swapped atomically on reload."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from tollgate.config.catalog import KNOWN_MODELS
from tollgate.config.env import providers_from_env
from tollgate.config.schema import (
    DeploymentTimeoutsConfig,
    ModelConfig,
    ProviderConfig,
    RoutingConfig,
    TollgateConfig,
)
from tollgate.pricing import PriceBook
from tollgate.providers.base import Deployment, ProviderAdapter, Timeouts
from tollgate.providers.registry import build_adapter
from tollgate.routing.breaker import BreakerSettings
from tollgate.routing.queue import QueueSettings
from tollgate.routing.resolver import ModelResolver, Route
from tollgate.routing.retry import BudgetSettings, RetrySettings
from tollgate.routing.rules import RouteRules
from tollgate.routing.shadow import ShadowTarget
from tollgate.routing.split import Split
from tollgate.routing.strategies import Candidate, RoutingSettings
from tollgate.types import JSONObject

DEMO_PROVIDER = ProviderConfig(type="demo", base_url="demo://local")


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str
    type: str
    source: str  # "config", "env" or "builtin"
    config: ProviderConfig = field(repr=False)


class Snapshot:
    """Everything the hot path reads from config, precomputed; never mutated after construction
    except for the bounded adapter cache (adapters are pure functions of their deployment)."""

    def __init__(self, config: TollgateConfig, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.config = config
        self.providers: dict[str, ProviderInfo] = {}
        for name, prov in config.providers.items():
            self.providers[name] = ProviderInfo(name, prov.type or name, "config", prov)
        if config.settings.detect_providers_from_env:
            for name, prov in providers_from_env(env).items():
                if name not in self.providers:
                    self.providers[name] = ProviderInfo(name, prov.type or name, "env", prov)
        if "demo" not in self.providers:
            self.providers["demo"] = ProviderInfo("demo", "demo", "builtin", DEMO_PROVIDER)
        self._adapters: dict[tuple[str, str, Timeouts], ProviderAdapter] = {}
        logical = {
            name: tuple(self.deployment(d.provider, d.model, d.timeouts) for d in model.deployments)
            for name, model in config.models.items()
        }
        prices = PriceBook(config.pricing)
        plans = {
            name: (model.strategy, self._plan(model, logical[name], prices)) for name, model in config.models.items()
        }
        # The deployments the config declares (``provider/model``): the only ones metrics label by name.
        self.deployment_keys = frozenset(c.key for _, plan in plans.values() for c in plan)
        splits = {
            name: Split(model.split.sticky, name) for name, model in config.models.items() if model.split is not None
        }
        fallbacks = {name: frozenset(model.fallback_on) for name, model in config.models.items() if model.fallback_on}
        self.resolver = ModelResolver(
            logical, {n: p.type for n, p in self.providers.items()}, self.deployment, plans, splits, fallbacks
        )
        # Shadow traffic per logical model (routing/shadow.py, policies/shadow.py).
        self.shadows: dict[str, ShadowTarget] = {}
        for name, model in config.models.items():
            if model.shadow is None:
                continue
            provider, model_id = model.shadow.deployment.split("/", 1)
            if provider not in self.providers:  # an environment provider whose variable is not set
                raise ValueError(f"models.{name}.shadow.deployment: provider {provider!r} is not configured")
            dep = self.deployment(provider, model_id)
            self.shadows[name] = ShadowTarget(dep, model.shadow.sample, model.shadow.max_concurrency)
        self.deployment_keys |= {t.key for t in self.shadows.values()}
        self.routing = routing_settings(config.routing)
        self.rules = RouteRules(config.routing.rules, config.routing.residency, self.resolver.resolve)
        digest = hashlib.sha256(orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS))
        self.version = f"{time.strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:8]}"
        self._models_payload = self._build_models()

    def deployment(self, provider: str, model: str, timeouts: DeploymentTimeoutsConfig | None = None) -> Deployment:
        info = self.providers[provider]
        cfg = info.config
        drop = cfg.drop_unsupported_params
        t = cfg.timeouts
        # A deployment's own timeouts override its provider's, key by key.
        own = timeouts.model_dump(exclude_none=True) if timeouts is not None else {}
        return Deployment(
            provider=provider,
            provider_type=info.type,
            model=model,
            base_url=cfg.base_url or "",
            api_key=cfg.api_key or "",
            api_version=cfg.api_version,
            headers=dict(cfg.headers),
            timeouts=Timeouts(
                own.get("connect", t.connect),
                own.get("read", t.read),
                own.get("total", t.total),
                own.get("first_token", t.first_token),
            ),
            drop_unsupported_params=self.config.settings.drop_unsupported_params if drop is None else drop,
        )

    @staticmethod
    def _plan(model: ModelConfig, deployments: tuple[Deployment, ...], prices: PriceBook) -> tuple[Candidate, ...]:
        out: list[Candidate] = []
        for index, (cfg, dep) in enumerate(zip(model.deployments, deployments, strict=True)):
            price = prices.price_of(dep)
            out.append(
                Candidate(
                    dep,
                    index,
                    weight=cfg.weight,
                    priority=cfg.priority,
                    max_concurrency=cfg.max_concurrency,
                    tags=tuple(cfg.tags),
                    region=cfg.region,
                    # USD per million tokens x 1000 = nano-dollars per token.
                    input_nanos=None if price is None else price.input * 1000,
                    output_nanos=None if price is None else price.output * 1000,
                )
            )
        return tuple(out)

    def resolve(self, model: str) -> Route:
        return self.resolver.resolve(model)

    def adapter(self, deployment: Deployment) -> ProviderAdapter:
        # Timeouts are part of the key: two logical models may call one provider model with different ones.
        key = (deployment.provider, deployment.model, deployment.timeouts)
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = build_adapter(deployment)
            if len(self._adapters) < 10_000:
                self._adapters[key] = adapter
        return adapter

    def _build_models(self) -> list[JSONObject]:
        created = int(time.time())
        out: list[JSONObject] = []
        seen: set[str] = set()

        def add(model_id: str, owner: str) -> None:
            if model_id not in seen:
                seen.add(model_id)
                out.append({"id": model_id, "object": "model", "created": created, "owned_by": owner})

        for name in self.config.models:
            add(name, "tollgate")
        for info in self.providers.values():
            names = list(info.config.models) or list(KNOWN_MODELS.get(info.type, ()))
            for model in names:
                add(f"{info.name}/{model}", info.name)
        return out

    def models(self) -> list[JSONObject]:
        return self._models_payload


def routing_settings(cfg: RoutingConfig) -> RoutingSettings:
    """The routing section as the plain settings the pure routing code reads."""
    r, b, k = cfg.retries, cfg.retry_budget, cfg.breaker
    return RoutingSettings(
        retries=RetrySettings(r.max_retries, r.backoff_base, r.backoff_max, r.jitter, r.retry_after_max),
        budget=BudgetSettings(b.ratio, b.window_seconds, b.min_retries),
        breaker=BreakerSettings(
            k.enabled,
            k.consecutive_failures,
            k.error_rate,
            k.min_calls,
            k.window_seconds,
            k.open_seconds,
            k.half_open_probes,
        ),
        latency_alpha=cfg.latency_alpha,
        queue=QueueSettings(cfg.queue.max_wait_seconds, cfg.queue.max_size),
    )
