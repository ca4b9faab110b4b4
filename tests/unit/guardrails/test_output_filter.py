"""Output content filter: whole answers and streams split at every possible point, with the smallest hold-back."""

from __future__ import annotations

import pytest

from tollgate.config.guardrails import OutputFilterConfig
from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.guardrails.output_filter import Hit, OutputMatcher, StreamScanner
from tollgate.policies.output_filter import OutputFilterPolicy
from tollgate.types import JSONObject

CONFIG = OutputFilterConfig.model_validate(
    {
        "enabled": True,
        "categories": {
            "secret_project": {"words": ["Project Nightjar"], "action": "block"},
            "profanity": {"words": ["darn", "heck"], "action": "mask"},
            "internal_ids": {"patterns": [r"INC-\d{4,6}"], "action": "mask"},
            "competitor": {"words": ["AcmeCorp"], "action": "flag"},
        },
        "placeholder": "[{category}]",
    }
)


def _ctx() -> RequestContext:
    return RequestContext("r", "openai", "chat", "v1", stream=True)


def _completion(text: str) -> JSONObject:
    return {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def test_hold_back_is_the_longest_match_plus_one() -> None:
    matcher = OutputMatcher(CONFIG.categories, CONFIG.max_pattern_chars)
    # "Project Nightjar" with up to three whitespace characters between the words: 15 + 3; INC-\d{4,6}: 10.
    assert matcher.longest == 18 and matcher.hold == 19
    unbounded = OutputMatcher(
        OutputFilterConfig.model_validate({"categories": {"x": {"patterns": ["sec+ret"]}}}).categories, 50
    )
    assert unbounded.longest == 50


def test_whole_answers_mask_flag_and_block() -> None:
    policy = OutputFilterPolicy(CONFIG)
    ctx = _ctx()
    out = policy.respond(ctx, _completion("Well, darn. See INC-20931 and ask AcmeCorp; darned is fine."))
    assert out is not None
    assert out["choices"][0]["message"]["content"] == (  # type: ignore[index,call-overload]
        "Well, [profanity]. See [internal_ids] and ask AcmeCorp; darned is fine."
    )
    [decision] = ctx.guardrail_decisions
    assert (decision.action, decision.rules, decision.count, decision.phase) == (
        "mask",
        ("competitor", "internal_ids", "profanity"),
        3,
        "output",
    )
    assert len(decision.payload_hash) == 64
    flagged = _ctx()
    assert policy.respond(flagged, _completion("Compared with acmecorp, we are faster.")) is None
    assert (b"x-tollgate-guardrail", b"flagged") in flagged.extra_headers
    assert policy.respond(_ctx(), _completion("Nothing to see.")) is None
    blocked = _ctx()
    with pytest.raises(PermissionDeniedError) as info:
        policy.respond(blocked, _completion("The plan for project\n nightjar is secret."))
    assert info.value.code == "output_blocked" and "secret_project" in info.value.message
    assert "nightjar" not in info.value.message.lower()
    assert blocked.guardrail_decisions[0].action == "block"


def _stream(text: str, cuts: list[int]) -> list[JSONObject]:
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    chunks: list[JSONObject] = [{"id": "s", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"id": "s", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    chunks.append({"id": "s", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


def _run(policy: OutputFilterPolicy, chunks: list[JSONObject]) -> tuple[str, list[JSONObject]]:
    flt = policy.stream_filter(_ctx())
    assert flt is not None
    out: list[JSONObject] = []
    for c in chunks:
        out += flt.feed([c])
    out += flt.flush()
    text = "".join(
        ch["delta"].get("content") or ""  # type: ignore[union-attr]
        for c in out
        for ch in c["choices"]  # type: ignore[union-attr]
    )
    return text, out


def test_a_match_split_at_every_point_of_a_stream_is_masked() -> None:
    policy = OutputFilterPolicy(CONFIG)
    text = "Oh heck, ticket INC-4821 is open."
    expected = "Oh [profanity], ticket [internal_ids] is open."
    for a in range(1, len(text)):
        for b in range(a + 1, len(text)):
            got, chunks = _run(policy, _stream(text, [a, b]))
            assert got == expected, (a, b)
            assert len(chunks) == 5  # nothing dropped, nothing added: every chunk goes out, some shortened
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_text_before_the_hold_back_goes_out_at_once() -> None:
    policy = OutputFilterPolicy(CONFIG)
    flt = policy.stream_filter(_ctx())
    assert flt is not None
    long = "a" * 100
    [first] = flt.feed(_stream(long, [])[1:2])
    assert first["choices"][0]["delta"]["content"] == "a" * (100 - 19)  # type: ignore[index,call-overload]


def test_a_blocked_stream_raises_and_is_marked_done() -> None:
    policy = OutputFilterPolicy(CONFIG)
    text = "Status of Project Nightjar: on track."
    for cut in range(1, len(text)):
        flt = policy.stream_filter(_ctx())
        assert flt is not None
        with pytest.raises(PermissionDeniedError):
            flt.feed(_stream(text, [cut]))
        assert flt.done and flt.no_store


def test_a_stream_ending_without_finish_chunk_releases_the_held_text() -> None:
    policy = OutputFilterPolicy(CONFIG)
    got, chunks = _run(policy, _stream("short darn", [5])[:-1])
    assert got == "short [profanity]"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {"content": "short [profanity]"}, "finish_reason": None}


def test_masked_stream_is_not_stored_and_clean_one_is() -> None:
    policy = OutputFilterPolicy(CONFIG)
    for text, no_store in (("all clean here", False), ("darn it", True), ("AcmeCorp rocks", False)):
        flt = policy.stream_filter(_ctx())
        assert flt is not None
        for c in _stream(text, [3]):
            flt.feed([c])
        flt.flush()
        assert flt.no_store is no_store and not flt.done


def test_scanner_keeps_word_boundaries_across_chunks() -> None:
    matcher = OutputMatcher(CONFIG.categories, 200)
    scanner = StreamScanner(matcher, "[x]")
    out = ""
    for piece in ("un", "heck", "ed ", "heck"):
        got, blocked = scanner.feed(piece)
        assert blocked is None
        out += got
    out += scanner.feed("", final=True)[0]
    assert out == "unhecked [x]"


def test_invalid_or_empty_matching_patterns_are_refused_at_load() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        OutputFilterConfig.model_validate({"categories": {"x": {"patterns": ["(unclosed"]}}})
    with pytest.raises(ValueError, match="empty string"):
        OutputFilterConfig.model_validate({"categories": {"x": {"patterns": ["a*"]}}})


@pytest.mark.parametrize(
    ("patterns", "words", "prefiltered"),
    [
        (["INC-\\d{4,6}", "(?:foo|bar)x", "[a-c]z"], ["Nightjar"], True),
        (["\\d{3}-secret"], ["Nightjar"], False),  # starts with any digit: no look-ahead set
        ([".+secret"], [], False),
    ],
)
def test_the_start_character_look_ahead_never_hides_a_match(
    patterns: list[str], words: list[str], prefiltered: bool
) -> None:
    cats = OutputFilterConfig.model_validate(
        {"categories": {"x": {"patterns": patterns, "words": words, "action": "mask"}}}
    ).categories
    matcher = OutputMatcher(cats, 50)
    assert matcher.regex is not None
    assert matcher.regex.pattern.startswith("(?=[") is prefiltered
    text = "see inc-1234, BARX, bz, 123-secret, xsecret and nightjar."
    hits: dict[str, Hit] = {}
    out, _, _ = matcher.apply(text, hits, "#")
    expected = {"INC-\\d{4,6}": "inc-1234", "(?:foo|bar)x": "BARX", "[a-c]z": "bz", "\\d{3}-secret": "123-secret"}
    for pattern in patterns:
        if pattern in expected:
            assert expected[pattern] not in out
    if words:
        assert "nightjar" not in out
    assert hits["x"].count >= len(patterns)
