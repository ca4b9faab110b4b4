"""Tool-call arguments through the output filter and the PII restorer: whole, and streamed split at every point."""

from __future__ import annotations

import json
from itertools import zip_longest

import orjson
import pytest

from tollgate.config.guardrails import OutputFilterConfig, PIIGuardConfig
from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.output_filter import OutputMatcher
from tollgate.guardrails.tool_args import ArgsScanner
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.policies.pii import PIIPolicy, PIIRestoreStreamFilter
from tollgate.types import JSONObject

CONFIG = OutputFilterConfig.model_validate(
    {
        "enabled": True,
        "categories": {
            "secret_project": {"words": ["Project Nightjar"], "action": "block"},
            "profanity": {"words": ["darn", "heck"], "action": "mask"},
            "cards": {"patterns": [r"4\d{15}"], "action": "mask"},
            "competitor": {"words": ["AcmeCorp"], "action": "flag"},
        },
        "placeholder": '"[{category}]"',  # quotes, so masking inside JSON must escape them
    }
)
MATCHER = OutputMatcher(CONFIG.categories, CONFIG.max_pattern_chars)


def _ctx() -> RequestContext:
    return RequestContext("r", "openai", "chat", "v1", stream=True)


def _scan(raw: str, cuts: list[int]) -> str:
    scanner = ArgsScanner(MATCHER, CONFIG.placeholder)
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        got, blocked = scanner.feed(raw[a:b], final=b == len(raw))
        assert blocked is None
        out.append(got)
    return "".join(out)


ARGS = {"to": "ops", "body": "line one\nheck, card 4111111111111111 darn\u00e9", "card": 4111111111111111, "heck": 1}


@pytest.mark.parametrize("raw", [orjson.dumps(ARGS).decode(), json.dumps(ARGS)])  # \u escapes in the second
def test_arguments_are_masked_inside_strings_and_stay_json_at_every_split(raw: str) -> None:
    whole = _scan(raw, [])
    assert json.loads(whole) == {
        "to": "ops",
        # "heck" after an escaped line break is found; "darné" is not the word "darn"
        "body": 'line one\n"[profanity]", card "[cards]" darn\u00e9',
        "card": '"[cards]"',  # a whole number token becomes a string
        '"[profanity]"': 1,  # a key is a string too
    }
    for a in range(1, len(raw)):
        for b in range(a, len(raw), 3):
            assert _scan(raw, [a, b]) == whole, (a, b)


def test_a_match_that_cannot_be_masked_in_json_blocks() -> None:
    scanner = ArgsScanner(MATCHER, "#")
    # Part of a longer number: masking it would leave a half number next to a string.
    _, blocked = scanner.feed('{"n": 41111111111111112}', final=True)
    assert blocked is not None and (blocked.name, blocked.action) == ("cards", "block")
    _, blocked = ArgsScanner(MATCHER, "#").feed('{"p": "project nightjar"}', final=True)
    assert blocked is not None and blocked.name == "secret_project"


def test_nothing_is_held_beyond_the_longest_match() -> None:
    scanner = ArgsScanner(MATCHER, "#")
    raw = '{"text": "' + "a" * 100
    out, _ = scanner.feed(raw)
    assert out == raw[: len(raw) - MATCHER.hold] and scanner.held == raw[len(out) :]


def _completion(calls: list[JSONObject], content: str | None = None) -> JSONObject:
    message: JSONObject = {"role": "assistant", "content": content, "tool_calls": calls}  # type: ignore[dict-item]
    return {"id": "c", "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}


def _call(index: int, args: str) -> JSONObject:
    return {"id": f"call_{index}", "type": "function", "function": {"name": "send", "arguments": args}}


def test_whole_answers_mask_and_block_tool_arguments() -> None:
    policy = OutputFilterPolicy(CONFIG)
    ctx = _ctx()
    out = policy.respond(ctx, _completion([_call(0, '{"q": "oh heck"}'), _call(1, '{"q": "fine"}')], "AcmeCorp"))
    assert out is not None
    calls = out["choices"][0]["message"]["tool_calls"]  # type: ignore[index,call-overload]
    assert json.loads(calls[0]["function"]["arguments"]) == {"q": 'oh "[profanity]"'}  # type: ignore[index]
    assert calls[1] == _call(1, '{"q": "fine"}')  # type: ignore[index]
    [decision] = ctx.guardrail_decisions
    assert (decision.action, decision.rules, decision.count) == ("mask", ("competitor", "profanity"), 2)
    blocked = _ctx()
    with pytest.raises(PermissionDeniedError) as info:
        policy.respond(blocked, _completion([_call(0, '{"n": 41111111111111112}')]))
    assert info.value.code == "output_blocked" and "cards" in info.value.message
    assert [(d.action, d.rules) for d in blocked.guardrail_decisions] == [("block", ("cards",))]


def _tool_stream(text: str, calls: list[str], cuts: int) -> list[JSONObject]:
    """An OpenAI-shaped stream: some text, then each call's arguments in deltas of ``cuts`` characters."""

    def chunk(delta: JSONObject, finish: str | None = None) -> JSONObject:
        return {"id": "s", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": text[i : i + cuts]}) for i in range(0, len(text), cuts)]
    for k, args in enumerate(calls):
        head = {"index": k, "id": f"call_{k}", "type": "function", "function": {"name": "send", "arguments": ""}}
        out.append(chunk({"tool_calls": [head]}))
        out += [
            chunk({"tool_calls": [{"index": k, "function": {"arguments": args[i : i + cuts]}}]})
            for i in range(0, len(args), cuts)
        ]
    out.append(chunk({}, "tool_calls"))
    return out


def _events(chunks: list[JSONObject]) -> list[tuple[str, int, str]]:
    """What an encoder sees, in order: ("text", 0, piece) and ("args", call index, piece)."""
    seen: list[tuple[str, int, str]] = []
    for c in chunks:
        for choice in c["choices"]:  # type: ignore[union-attr]
            delta = choice["delta"]  # type: ignore[index,call-overload]
            if delta.get("content"):
                seen.append(("text", 0, delta["content"]))
            for call in delta.get("tool_calls") or []:
                if call["function"].get("arguments"):
                    seen.append(("args", call["index"], call["function"]["arguments"]))
    return seen


@pytest.mark.parametrize("cuts", [1, 2, 3, 5, 8])
def test_streamed_arguments_are_masked_per_call_in_order(cuts: int) -> None:
    policy = OutputFilterPolicy(CONFIG)
    flt = policy.stream_filter(_ctx())
    assert flt is not None
    chunks = _tool_stream(
        "Sending it, heck.", ['{"body": "darn it"}', '{"body": "all fine", "n": 4111111111111111}'], cuts
    )
    out: list[JSONObject] = []
    for c in chunks:
        out += flt.feed([c])
    out += flt.flush()
    assert len(out) == len(chunks)  # nothing dropped or added
    events = _events(out)
    # Text, then call 0, then call 1: held text goes out before the calls, call 0's rest before call 1.
    kinds = [(kind, k) for kind, k, _ in events]
    assert kinds == sorted(kinds, key=lambda e: (e[0] != "text", e[1]))
    assert "".join(p for kind, _, p in events if kind == "text") == 'Sending it, "[profanity]".'
    args = ["".join(p for kind, k, p in events if kind == "args" and k == i) for i in (0, 1)]
    assert json.loads(args[0]) == {"body": '"[profanity]" it'}
    assert json.loads(args[1]) == {"body": "all fine", "n": '"[cards]"'}
    assert flt.no_store and not flt.done


@pytest.mark.parametrize("cuts", [1, 4, 7])
def test_a_streamed_blocking_argument_ends_the_stream(cuts: int) -> None:
    ctx = _ctx()
    flt = OutputFilterPolicy(CONFIG).stream_filter(ctx)
    assert flt is not None
    sent: list[JSONObject] = []

    def read() -> None:
        for c in _tool_stream("", ['{"title": "Project Nightjar plans"}'], cuts):
            sent.extend(flt.feed([c]))

    with pytest.raises(PermissionDeniedError):
        read()
    assert flt.done and "nightjar" not in str(sent).lower()
    assert [d.action for d in ctx.guardrail_decisions] == ["block"]


def test_a_stream_cut_inside_the_arguments_releases_them_at_flush() -> None:
    flt = OutputFilterPolicy(CONFIG).stream_filter(_ctx())
    assert flt is not None
    out: list[JSONObject] = []
    for c in _tool_stream("", ['{"a": "heck"}'], 4)[:-1]:  # no finish chunk
        out += flt.feed([c])
    out += flt.flush()
    assert json.loads("".join(p for _, _, p in _events(out))) == {"a": '"[profanity]"'}


def test_pii_placeholders_are_restored_in_streamed_arguments_as_json() -> None:
    originals = {"<EMAIL_1>": "ann@example.com", "<NAME_1>": 'Ann "the boss" Lee'}
    args = '{"to": "<EMAIL_1>", "name": "<NAME_1>"}'
    for cuts in (1, 2, 3, 5):
        flt = PIIRestoreStreamFilter(originals)
        out: list[JSONObject] = []
        for c in _tool_stream("Mail <NAME_1>.", [args], cuts):
            out += flt.feed([c])
        out += flt.flush()
        events = _events(out)
        assert "".join(p for kind, _, p in events if kind == "text") == 'Mail Ann "the boss" Lee.'
        assert json.loads("".join(p for kind, _, p in events if kind == "args")) == {
            "to": "ann@example.com",
            "name": 'Ann "the boss" Lee',
        }


async def test_pii_placeholders_are_restored_in_whole_answers_tool_arguments() -> None:
    policy = PIIPolicy(PIIGuardConfig(enabled=True, reversible=True))
    ctx = _ctx()
    await policy.inspect(ctx, {"model": "m", "messages": [{"role": "user", "content": "mail ann@example.com"}]})
    out = policy.respond(ctx, _completion([_call(0, '{"to": "<EMAIL_1>"}')], "Mailing <EMAIL_1>."))
    assert out is not None
    message = out["choices"][0]["message"]  # type: ignore[index,call-overload]
    assert message["content"] == "Mailing ann@example.com."
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": "ann@example.com"}


def test_choices_are_screened_apart_when_their_chunks_interleave() -> None:
    flt = OutputFilterPolicy(CONFIG).stream_filter(_ctx())
    assert flt is not None
    one, two = _tool_stream("", ['{"q": "he'], 2), _tool_stream("", ['ck"}'], 2)
    for chunk in two:
        chunk["choices"][0]["index"] = 1  # type: ignore[index]
    out: list[JSONObject] = []
    for pair in zip_longest(one, two):
        out += flt.feed([c for c in pair if c is not None])
    out += flt.flush()
    args = {0: "", 1: ""}
    for c in out:
        for choice in c["choices"]:  # type: ignore[union-attr]
            for call in choice["delta"].get("tool_calls") or []:  # type: ignore[index,call-overload]
                args[choice["index"]] += call["function"]["arguments"]  # type: ignore[index]
    # Neither choice holds "heck" on its own: nothing is masked, each choice's text is its own.
    assert args == {0: '{"q": "he', 1: 'ck"}'}
