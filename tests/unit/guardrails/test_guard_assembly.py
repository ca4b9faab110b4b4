"""The new guards are installed only when enabled, in a defined order; defaults keep every fast path."""

from __future__ import annotations

from tollgate.api.app import create_app
from tollgate.config.loader import parse_config
from tollgate.core.gateway import Gateway
from tollgate.policies.caps import CapsPolicy
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.policies.output_schema import OutputSchemaPolicy
from tollgate.policies.pii import PIIPolicy
from tollgate.policies.reservation import ReservationPolicy
from tollgate.policies.webhook_guard import WebhookGuardPolicy

ENV = {"TOLLGATE_MASTER_KEY": "tg-master-test-key-0123456789", "TOLLGATE_DATABASE_URL": "memory://"}


def _gateway(yaml_text: str) -> Gateway:
    app, _, _ = create_app(parse_config(yaml_text, "<test>", ENV), ENV)
    return app.gateway


def test_defaults_install_no_new_guard() -> None:
    gw = _gateway("")
    # Only the shadow-traffic observer (always there: shadows can be added by a reload), which reads nothing
    # and so keeps the Anthropic pass-through and the stream relay.
    assert gw.pipeline.inspect == () and gw.pipeline.review == ()
    assert [type(p).__name__ for p in gw.pipeline.respond] == ["ShadowPolicy"]
    assert not gw.pipeline.screens_output
    assert [type(f).__name__ for f in gw.pipeline.stream_filters] == ["ShadowPolicy", "BudgetPolicy"]


def test_every_guard_on_runs_in_phase_order() -> None:
    gw = _gateway(
        """
guardrails:
  pii: {enabled: true}
  caps: {enabled: true, max_output_tokens: 100}
  output_filter: {enabled: true, categories: {x: {words: [foo]}}}
  output_schema: {enabled: true}
  webhook: {enabled: true, url: "http://127.0.0.1:9/x", on_response: true}
"""
    )
    admit = [type(p) for p in gw.pipeline.admit]
    assert admit.index(CapsPolicy) == admit.index(ReservationPolicy) - 1  # caps before anything is reserved
    assert [type(p) for p in gw.pipeline.inspect] == [PIIPolicy, CapsPolicy, WebhookGuardPolicy]
    respond = [type(p) for p in gw.pipeline.respond if type(p).__name__ != "ShadowPolicy"]
    assert respond == [PIIPolicy, OutputFilterPolicy, OutputSchemaPolicy]
    assert [type(p) for p in gw.pipeline.review] == [WebhookGuardPolicy]
    names = [type(f).__name__ for f in gw.pipeline.stream_filters if type(f).__name__ != "ShadowPolicy"]
    assert names == ["PIIPolicy", "OutputFilterPolicy", "OutputSchemaPolicy", "BudgetPolicy"]
    assert gw.pipeline.screens_output
