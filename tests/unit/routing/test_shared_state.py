"""Routing state belongs to the process: a config reload keeps breakers and latency, with the new settings."""

from __future__ import annotations

from tollgate.api.app import create_app
from tollgate.config.schema import TollgateConfig
from tollgate.core.snapshot import Snapshot

ENV = {"TOLLGATE_MASTER_KEY": "m", "TOLLGATE_DATABASE_URL": "memory://"}


def test_a_config_swap_keeps_the_state_and_applies_its_settings() -> None:
    app, _, _ = create_app(TollgateConfig(), ENV)
    gateway = app.gateway
    state = gateway.dispatcher.state
    state.breaker("openai/gpt-4o").failure(0.0, state.settings.breaker)
    reloaded = TollgateConfig.model_validate({"routing": {"breaker": {"consecutive_failures": 9}}})
    gateway.swap(Snapshot(reloaded, env={}))
    assert gateway.dispatcher.state is state
    assert state.breakers["openai/gpt-4o"].consecutive == 1
    assert state.settings.breaker.consecutive_failures == 9
    other, _, _ = create_app(TollgateConfig(), ENV)
    assert other.gateway.dispatcher.state is not state  # one state per gateway, not per module
