"""Pipelines per guardrail profile: who gets which, shared gateway-wide policies, and a request keeps its own."""

from __future__ import annotations

from tollgate.api.app import create_app
from tollgate.config.loader import parse_config
from tollgate.context import Principal, RequestContext
from tollgate.core.gateway import Gateway
from tollgate.core.pipeline import Pipeline, Pipelines
from tollgate.policies.injection import InjectionPolicy
from tollgate.policies.ledger import LedgerPolicy
from tollgate.policies.pii import PIIPolicy
from tollgate.policies.webhook_guard import WebhookGuardPolicy

ENV = {"TOLLGATE_MASTER_KEY": "tg-master-test-key-0123456789", "TOLLGATE_DATABASE_URL": "memory://"}
CONFIG = """
guardrails:
  pii: {enabled: true, reversible: true}
  profiles:
    strict: {injection: {enabled: true}}
    hooked: {webhook: {enabled: true, url: "http://127.0.0.1:9/check"}}
  assign:
    orgs: {acme: strict}
    teams: {research: default}
    keys: {key_w: hooked}
"""


def _gateway(yaml_text: str = CONFIG) -> Gateway:
    app, _, _ = create_app(parse_config(yaml_text, "<test>", ENV), ENV)
    return app.gateway


def _principal(key: str, team: str | None = None, org: str | None = None) -> Principal:
    return Principal(key_id=key, name=key, role="user", team_id=team, org_id=org)


def test_callers_get_their_profiles_pipeline() -> None:
    gw = _gateway()
    pipelines = gw.pipelines
    assert pipelines.select(_principal("key_w", "research", "acme")).profile == "hooked"
    assert pipelines.select(_principal("key_1", "research", "acme")).profile == "default"  # team says default
    assert pipelines.select(_principal("key_1", "support", "acme")).profile == "strict"
    assert pipelines.select(_principal("key_1")).profile == "default"


def test_profiles_have_their_own_guards_around_the_same_gateway_wide_policies() -> None:
    gw = _gateway()
    default, strict = gw.pipelines.by_profile["default"], gw.pipelines.by_profile["strict"]
    assert [type(p) for p in strict.inspect] == [PIIPolicy, InjectionPolicy]
    assert [type(p) for p in default.inspect] == [PIIPolicy]
    assert default.inspect[0] is not strict.inspect[0]  # each profile's guard keeps its own request state
    ledgers = {id(p) for pl in gw.pipelines.by_profile.values() for p in pl.finalize if isinstance(p, LedgerPolicy)}
    assert len(ledgers) == 1  # one ledger (and limits, budgets, metrics) for every profile
    assert strict.guards == (("pii", "input+output"), ("injection", "input"))
    hooked = gw.pipelines.by_profile["hooked"]
    assert [type(p) for p in hooked.review] == [] and isinstance(hooked.inspect[-1], WebhookGuardPolicy)
    assert any(getattr(close, "__self__", None) is hooked.inspect[-1] for close in hooked.closers)


async def test_a_request_keeps_the_pipeline_it_started_with_across_a_reload() -> None:
    gw = _gateway()
    ctx = RequestContext("r1", "openai", "chat", gw.snapshot.version)
    principal = _principal("key_1")
    ctx.principal = principal
    ctx.pipeline = gw.pipelines.select(principal)
    body = {"model": "m", "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}
    masked = await gw.inspect(ctx, body)
    assert "jane.doe" not in str(masked)
    # A reload installs new pipelines (new PII policy instances) while the request waits for its answer.
    assert gw.compose is not None
    gw.install(gw.compose(parse_config(CONFIG, "<test>", ENV).guardrails))
    assert gw.pipelines.select(principal) is not ctx.pipeline
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Sent to <EMAIL_1>."}}]}
    restored = gw.respond(ctx, answer)
    # The old pipeline's PII policy still holds this request's mapping, so the caller gets the value back.
    assert restored is not None and restored["choices"][0]["message"]["content"] == "Sent to jane.doe@example.com."  # type: ignore[index]


async def test_what_a_replaced_pipeline_holds_open_is_closed_after_its_grace_time() -> None:
    closed: list[str] = []

    async def close() -> None:
        closed.append("x")

    gw = _gateway("")
    gw.install(Pipelines(Pipeline(closers=(close,))))
    gw.install(Pipelines(Pipeline()), grace_seconds=60.0)
    await gw.close_retired()
    assert closed == []  # requests may still use it
    await gw.close_retired(float("inf"))
    assert closed == ["x"]
