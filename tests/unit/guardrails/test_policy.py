"""PIIPolicy on canonical request bodies: every provider-visible text masked, blocking, reversible answers."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from tollgate.config.guardrails import GuardrailsConfig, PIIGuardConfig
from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.policies.pii import PIIPolicy, PIISummary
from tollgate.types import JSONObject


def ctx(request_id: str = "req-1") -> RequestContext:
    return RequestContext(request_id=request_id, front_door="openai", endpoint="chat", config_version="v1")


def body() -> JSONObject:
    return {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "You help ann@example.com's team."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "My card is 4111 1111 1111 1111, mail ann@example.com"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"email": "bob@example.com", "n": 3}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "bob@example.com: +44 20 7946 0958"},
            {"role": "user", "content": "thanks, nothing else"},
        ],
    }


async def test_every_text_the_provider_sees_is_masked_and_the_caller_body_is_untouched() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True))
    original = body()
    kept = copy.deepcopy(original)
    request = ctx()  # the policy keeps a request's state by its context object: one context per request
    out = await policy.inspect(request, original)
    assert original == kept
    msgs = out["messages"]
    assert isinstance(msgs, list)
    assert msgs[0] == {"role": "system", "content": "You help <EMAIL_1>'s team."}
    assert msgs[1]["content"][0]["text"] == "My card is <CREDIT_CARD_1>, mail <EMAIL_1>"  # type: ignore[index]
    assert msgs[1]["content"][1] is original["messages"][1]["content"][1]  # type: ignore[index]
    args = msgs[2]["tool_calls"][0]["function"]["arguments"]  # type: ignore[index]
    assert args == '{"email": "<EMAIL_2>", "n": 3}'
    assert msgs[3]["content"] == "<EMAIL_2>: <PHONE_1>"  # type: ignore[index]
    assert msgs[4] is original["messages"][4]  # type: ignore[index]
    assert out["temperature"] == 0.2
    summary = policy.summary(request)
    assert summary.counts == (("CREDIT_CARD", 1), ("EMAIL", 4), ("PHONE", 1))
    assert summary.total == 6 and summary.count("EMAIL") == 4
    assert "example.com" not in repr(summary)


async def test_a_body_without_pii_is_returned_as_is() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True))
    original: JSONObject = {"model": "m", "messages": [{"role": "user", "content": "Hello there, version 2.1.3"}]}
    assert await policy.inspect(ctx(), original) is original
    assert policy.summary(ctx()) == PIISummary()


async def test_block_names_the_types_never_the_values() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True, actions={"CREDIT_CARD": "block", "US_SSN": "block"}))
    with pytest.raises(PermissionDeniedError) as err:
        await policy.inspect(ctx(), body())
    assert err.value.status == 403
    assert "CREDIT_CARD" in err.value.message
    assert "US_SSN" not in err.value.message
    assert "4111" not in err.value.message and "example.com" not in err.value.message
    assert err.value.code == "sensitive_data_blocked"


async def test_allowed_types_pass_and_other_actions_apply() -> None:
    config = PIIGuardConfig(enabled=True, default_action="redact", actions={"EMAIL": "allow"}, hash_salt="s")
    out = await PIIPolicy(config).inspect(ctx(), body())
    assert out["messages"][3]["content"] == "bob@example.com: [REDACTED]"  # type: ignore[index]


async def test_hashes_are_stable_with_a_configured_salt() -> None:
    config = PIIGuardConfig(enabled=True, default_action="hash", hash_salt="pepper")
    a = await PIIPolicy(config).inspect(ctx(), body())
    b = await PIIPolicy(config).inspect(ctx(), body())
    assert a == b
    assert str(a["messages"][0]["content"]).startswith("You help <EMAIL:")  # type: ignore[index]


async def test_reversible_mode_restores_answers_per_request_and_forgets_at_finalize() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True, reversible=True))
    first, second = ctx("r1"), ctx("r2")
    await policy.inspect(first, body())
    await policy.inspect(second, {"model": "m", "messages": [{"role": "user", "content": "mail zed@example.org"}]})
    answer = "I wrote to <EMAIL_1> and <EMAIL_2>; card <CREDIT_CARD_1>."
    assert policy.restore(first, answer) == "I wrote to ann@example.com and bob@example.com; card 4111 1111 1111 1111."
    assert policy.restore(second, answer) == "I wrote to zed@example.org and <EMAIL_2>; card <CREDIT_CARD_1>."
    restorer = policy.stream_restorer(first)
    assert restorer is not None
    assert restorer.feed("to <EMA") + restorer.feed("IL_2>!") + restorer.flush() == "to bob@example.com!"
    policy.on_finalize(first)
    assert policy.restore(first, answer) == answer
    assert policy.stream_restorer(first) is None
    policy.on_finalize(first)  # twice is harmless


async def test_without_reversible_mode_nothing_is_restored() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True))
    await policy.inspect(ctx(), body())
    assert policy.restore(ctx(), "<EMAIL_1>") == "<EMAIL_1>"
    assert policy.stream_restorer(ctx()) is None


async def test_embeddings_input_and_legacy_function_call_are_masked() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True))
    out = await policy.inspect(ctx(), {"model": "e", "input": ["a@b.io", "plain", 3]})
    assert out["input"] == ["<EMAIL_1>", "plain", 3]
    out = await policy.inspect(
        ctx(),
        {
            "model": "m",
            "messages": [{"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "a@b.io"}}],
        },
    )
    assert out["messages"][0]["function_call"] == {"name": "f", "arguments": "<EMAIL_1>"}  # type: ignore[index]


def test_config_rejects_unknown_types_and_actions() -> None:
    with pytest.raises(ValidationError):
        PIIGuardConfig.model_validate({"actions": {"NAME": "mask"}})
    with pytest.raises(ValidationError):
        PIIGuardConfig.model_validate({"actions": {"EMAIL": "drop"}})
    with pytest.raises(ValidationError):
        PIIGuardConfig.model_validate({"enable": True})
    config = GuardrailsConfig.model_validate({"pii": {"enabled": True, "phone_regions": ["de", "fr"]}})
    assert config.pii.phone_regions == ("DE", "FR")
    assert config.pii.action_for("EMAIL") == "mask"


def chunk(content: str | None, finish: str | None = None, index: int = 0) -> JSONObject:
    delta: JSONObject = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def streamed_text(chunks: list[JSONObject]) -> str:
    out = []
    for c in chunks:
        for choice in c["choices"]:  # type: ignore[union-attr]
            content = choice["delta"].get("content")  # type: ignore[index,call-overload,union-attr]
            out.append(content or "")
    return "".join(out)


STREAM_ANSWER = "Sure: <EMAIL_1> pays with <CREDIT_CARD_1>; cc <EMAIL_2>."


@pytest.mark.parametrize("cut", range(len(STREAM_ANSWER) + 1))
async def test_stream_filter_restores_placeholders_split_across_chunks(cut: int) -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True, reversible=True))
    request = ctx(f"s{cut}")
    await policy.inspect(request, body())
    stream_filter = policy.stream_filter(request)
    assert stream_filter is not None
    parts = [chunk(STREAM_ANSWER[:cut]), chunk(STREAM_ANSWER[cut:]), chunk(None, "stop")]
    usage_only: JSONObject = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": {}}
    out = stream_filter.feed(parts[:2]) + stream_filter.feed([parts[2], usage_only]) + stream_filter.flush()
    assert len(out) == 4 and out[-1] is usage_only
    assert out[2]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index,call-overload]
    assert streamed_text(out[:3]) == ("Sure: ann@example.com pays with 4111 1111 1111 1111; cc bob@example.com.")


async def test_stream_filter_flushes_a_held_tail_when_the_stream_ends_without_finish() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True, reversible=True))
    request = ctx()  # one context per request: the policy finds the request's mapping by it
    await policy.inspect(request, body())
    stream_filter = policy.stream_filter(request)
    assert stream_filter is not None
    out = stream_filter.feed([chunk("to <EMAIL_")])
    assert streamed_text(out) == "to "
    tail = stream_filter.flush()
    assert streamed_text(tail) == "<EMAIL_"
    assert tail[0]["id"] == "chatcmpl-1"
    assert PIIPolicy(PIIGuardConfig(enabled=True)).stream_filter(ctx()) is None
