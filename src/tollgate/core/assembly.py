"""Assemble the gateway from config: storage, counters, prices, and the policies in phase order."""

from __future__ import annotations

from collections.abc import Mapping

from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings
from tollgate.core.gateway import Gateway
from tollgate.core.snapshot import Snapshot
from tollgate.core.transport import Transport, demo_handler
from tollgate.policies.ledger import SPOOL_FILE, LedgerPolicy
from tollgate.policies.model_access import ModelAccessPolicy
from tollgate.policies.pricing import UnpricedModelPolicy
from tollgate.policies.rate_limit import RateLimitPolicy
from tollgate.pricing import PriceBook
from tollgate.state.counters import open_counter_store
from tollgate.state.factory import open_storage


def build_gateway(config: TollgateConfig, env: Mapping[str, str], settings: StaticSettings, master_key: str) -> Gateway:
    storage = open_storage(settings.database_url)
    gateway = Gateway(
        Snapshot(config, env), Transport({"demo": demo_handler}), storage, master_key, settings.max_body_bytes
    )
    rl = config.rate_limits
    counters = open_counter_store(
        rl.counter_url, fail_open=rl.fail_open, timeout_seconds=rl.redis_timeout_seconds, key_prefix=rl.key_prefix
    )
    rate_limits = RateLimitPolicy(counters, rl)
    prices = PriceBook(config.pricing)
    ledger = LedgerPolicy(storage.ledger, prices, settings.data_dir / SPOOL_FILE)
    # ADMIT order: the allow-list first (a forbidden model must not consume the caller's limits), then
    # the price check (an unpriced model is refused before it is counted), then the limits.
    gateway.admit_policies = (ModelAccessPolicy(), UnpricedModelPolicy(prices), rate_limits)
    # FINALIZE order: the ledger first, since it prices the request (ctx.cost_usd) for what follows.
    gateway.finalize_policies = (ledger, rate_limits)
    gateway.services = (ledger, rate_limits)
    gateway.closers = (counters.close,)
    return gateway
