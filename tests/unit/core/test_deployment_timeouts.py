"""A deployment's own timeouts override its provider's key by key, and each gets an adapter with its own."""

from __future__ import annotations

from tollgate.config.loader import parse_config
from tollgate.core.snapshot import Snapshot
from tollgate.providers.base import Timeouts

CONFIG = """
providers:
  openai: {api_key: sk-o, base_url: 'http://127.0.0.1:1/v1', timeouts: {connect: 3, read: 30, first_token: 8}}
models:
  patient:
    deployments:
      - {provider: openai, model: gpt-4o, timeouts: {read: 300, first_token: 60}}
  quick:
    deployments:
      - {provider: openai, model: gpt-4o, timeouts: {total: 5}}
      - {provider: openai, model: gpt-4o-mini}
"""


def test_deployment_timeouts_override_the_providers_key_by_key() -> None:
    snap = Snapshot(parse_config(CONFIG, "<test>", {}), env={})
    patient = snap.resolve("patient").candidates[0]
    quick, plain = snap.resolve("quick").candidates
    assert patient.timeouts == Timeouts(connect=3, read=300, total=600, first_token=60)
    assert quick.timeouts == Timeouts(connect=3, read=30, total=5, first_token=8)
    assert plain.timeouts == Timeouts(connect=3, read=30, total=600, first_token=8)
    # One provider model, two timeouts: each call must use its own deployment's.
    assert snap.adapter(patient).deployment.timeouts.read == 300
    assert snap.adapter(quick).deployment.timeouts.read == 30
    assert snap.adapter(snap.deployment("openai", "gpt-4o")).deployment.timeouts.first_token == 8


def test_first_token_is_off_unless_set() -> None:
    snap = Snapshot(parse_config("providers:\n  openai: {api_key: sk-o}\n", "<test>", {}), env={})
    assert snap.resolve("openai/gpt-4o").candidates[0].timeouts.first_token is None
