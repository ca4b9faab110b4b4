"""Token caps: the tightest of global, per-model and caller caps; reject or clamp; the cap written into the body."""

from __future__ import annotations

import pytest

from tollgate.config.guardrails import CapsConfig
from tollgate.context import Principal, RequestContext
from tollgate.errors import InvalidRequestError
from tollgate.policies.caps import CapsPolicy
from tollgate.routing.resolver import Route


def _ctx(
    prompt: int = 10, out: int | None = None, model: str = "m", endpoint: str = "chat", meta=None
) -> RequestContext:  # type: ignore[no-untyped-def]
    ctx = RequestContext("r", "openai", endpoint, "v1")
    ctx.estimated_prompt_tokens = prompt
    ctx.max_output_tokens = out
    ctx.requested_model = model
    ctx.principal = Principal("k1", "key", "user", metadata=meta or {})
    return ctx


ROUTE = Route.__new__(Route)  # the policy does not read the route


async def test_prompt_over_the_cap_is_rejected_naming_the_cap() -> None:
    policy = CapsPolicy(CapsConfig(enabled=True, max_prompt_tokens=100))
    await policy.admit(_ctx(prompt=100), ROUTE)
    ctx = _ctx(prompt=101)
    with pytest.raises(InvalidRequestError) as info:
        await policy.admit(ctx, ROUTE)
    assert info.value.code == "prompt_too_large" and info.value.status == 400
    assert "cap of 100" in info.value.message and "guardrails.caps.max_prompt_tokens" in info.value.message
    assert [(d.guardrail, d.action, d.rules) for d in ctx.guardrail_decisions] == [
        ("caps", "block", ("max_prompt_tokens",))
    ]


async def test_tightest_cap_wins_model_and_metadata() -> None:
    cfg = CapsConfig.model_validate(
        {"enabled": True, "max_output_tokens": 1000, "models": {"small": {"max_output_tokens": 200}}}
    )
    policy = CapsPolicy(cfg)
    assert policy.caps_for(_ctx(model="big")).max_output_tokens == 1000
    assert policy.caps_for(_ctx(model="small")).max_output_tokens == 200
    tight = policy.caps_for(_ctx(model="small", meta={"max_output_tokens": 50, "max_prompt_tokens": 7}))
    assert (tight.max_output_tokens, tight.max_prompt_tokens) == (50, 7)
    # A looser caller cap does not loosen the config's; junk values are ignored.
    assert policy.caps_for(_ctx(model="small", meta={"max_output_tokens": 5000})).max_output_tokens == 200
    assert policy.caps_for(_ctx(meta={"max_output_tokens": "lots"})).max_output_tokens == 1000
    off = CapsPolicy(cfg.model_copy(update={"metadata_caps": False}))
    assert off.caps_for(_ctx(model="small", meta={"max_output_tokens": 50})).max_output_tokens == 200


async def test_reject_mode_refuses_larger_max_tokens() -> None:
    policy = CapsPolicy(CapsConfig(enabled=True, max_output_tokens=256))
    ctx = _ctx(out=257)
    with pytest.raises(InvalidRequestError) as info:
        await policy.admit(ctx, ROUTE)
    assert info.value.code == "max_tokens_too_large" and "256" in info.value.message
    ok = _ctx(out=256)
    await policy.admit(ok, ROUTE)
    body = {"model": "m", "max_tokens": 256}
    assert await policy.inspect(ok, body) is body  # nothing to write


async def test_clamp_mode_lowers_max_tokens_and_the_reservation() -> None:
    policy = CapsPolicy(CapsConfig(enabled=True, max_output_tokens=256, output_action="clamp"))
    ctx = _ctx(out=4000)
    await policy.admit(ctx, ROUTE)
    assert ctx.max_output_tokens == 256
    body = {"model": "m", "max_tokens": 4000, "max_completion_tokens": 4000}
    assert await policy.inspect(ctx, body) == {"model": "m", "max_tokens": 256, "max_completion_tokens": 256}
    assert body["max_tokens"] == 4000  # the caller's body is not changed
    assert [d.action for d in ctx.guardrail_decisions] == ["clamp"]
    # Legacy completions are not rewritten, so they are refused instead of clamped.
    with pytest.raises(InvalidRequestError):
        await policy.admit(_ctx(out=4000, endpoint="completions"), ROUTE)


async def test_a_request_without_max_tokens_gets_the_cap() -> None:
    policy = CapsPolicy(CapsConfig(enabled=True, max_output_tokens=64))
    ctx = _ctx(out=None)
    await policy.admit(ctx, ROUTE)
    assert await policy.inspect(ctx, {"model": "m"}) == {"model": "m", "max_tokens": 64}
    assert ctx.guardrail_decisions == []  # not a decision: the request asked for nothing
    emb = _ctx(out=None, endpoint="embeddings")
    await policy.admit(emb, ROUTE)
    assert emb.max_output_tokens is None


async def test_no_caps_configured_changes_nothing() -> None:
    policy = CapsPolicy(CapsConfig(enabled=True))
    ctx = _ctx(prompt=10**6, out=10**6)
    await policy.admit(ctx, ROUTE)
    body = {"model": "m"}
    assert await policy.inspect(ctx, body) is body
