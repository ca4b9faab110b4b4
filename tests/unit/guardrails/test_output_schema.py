"""JSON-schema validation of answers: whole answers and streams; errors name the problem, never the content."""

from __future__ import annotations

import pytest

from tollgate.config.guardrails import OutputSchemaConfig
from tollgate.context import RequestContext
from tollgate.policies.output_schema import OutputSchemaPolicy, SchemaViolation, requested_schema
from tollgate.types import JSONObject

SCHEMA: JSONObject = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def _ctx(schema: JSONObject | None = SCHEMA, front_door: str = "openai", stream: bool = False) -> RequestContext:
    ctx = RequestContext("r", front_door, "chat", "v1", stream=stream)
    body: JSONObject = {"model": "m", "messages": []}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    ctx.body = body
    return ctx


def _completion(text: str | None, finish: str = "stop") -> JSONObject:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}


POLICY = OutputSchemaPolicy(OutputSchemaConfig(enabled=True, retries=0))


def test_requested_schema() -> None:
    assert requested_schema(_ctx().body) == SCHEMA
    assert requested_schema({"response_format": {"type": "json_object"}}) is None
    assert requested_schema({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}) is None
    assert requested_schema(None) is None


def test_a_valid_answer_passes_unchanged() -> None:
    ctx = _ctx()
    assert POLICY.respond(ctx, _completion('{"name": "Ada", "age": 36}')) is None
    assert ctx.guardrail_decisions == []
    assert POLICY.respond(ctx, _completion(None, "tool_calls")) is None  # no text: nothing to validate


@pytest.mark.parametrize(
    ("answer", "rule", "where"),
    [
        ('{"name": "Ada", "age": "thirty-six"}', "schema.type", "at $.age"),
        ('{"name": "Ada"}', "schema.required", "at $ "),
        ('{"name": "Ada", "age": -4}', "schema.minimum", "at $.age"),
        ('{"name": "Ada", "age": 3, "secret": "hunter2"}', "schema.additionalProperties", "at $ "),
        ('{"name": "Ada", "ag', "json", "not valid JSON"),
    ],
)
def test_an_invalid_answer_is_a_502_naming_the_problem_not_the_content(answer: str, rule: str, where: str) -> None:
    ctx = _ctx()
    with pytest.raises(SchemaViolation) as info:
        POLICY.respond(ctx, _completion(answer))
    err = info.value
    assert (err.status, err.code) == (502, "output_schema_invalid")
    assert where in err.message
    for secret in ("thirty-six", "hunter2", "Ada"):
        assert secret not in err.message
    [decision] = ctx.guardrail_decisions
    assert (decision.guardrail, decision.action, decision.rules) == ("output_schema", "block", (rule,))


def test_a_truncated_answer_says_so() -> None:
    with pytest.raises(SchemaViolation, match="cut off at max_tokens"):
        POLICY.respond(_ctx(), _completion('{"name": "A', "length"))


def test_requests_without_a_schema_or_from_other_front_doors_are_not_validated() -> None:
    assert POLICY.respond(_ctx(None), _completion("not json")) is None
    assert POLICY.respond(_ctx(front_door="anthropic"), _completion("not json")) is None
    assert POLICY.stream_filter(_ctx(None, stream=True)) is None
    assert POLICY.respond(_ctx({"type": "no-such-type"}), _completion("not json")) is None  # invalid schema


def _chunks(pieces: list[str], finish: bool = True) -> list[JSONObject]:
    out: list[JSONObject] = [
        {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces
    ]
    if finish:
        out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return out


def test_streams_are_validated_at_their_finish_chunk() -> None:
    ctx = _ctx(stream=True)
    flt = POLICY.stream_filter(ctx)
    assert flt is not None
    chunks = _chunks(['{"name": "Ada",', ' "age": 36}'])
    assert [c for part in chunks for c in flt.feed([part])] == chunks  # passes every chunk through unchanged
    assert flt.flush() == [] and not flt.no_store
    bad = POLICY.stream_filter(_ctx(stream=True))
    assert bad is not None
    bad.feed(_chunks(['{"name": "Ada",'], finish=False))
    with pytest.raises(SchemaViolation):
        bad.feed(_chunks([' "age": "x"}']))
    assert bad.done and bad.no_store


def test_flag_mode_records_and_lets_the_stream_end() -> None:
    policy = OutputSchemaPolicy(OutputSchemaConfig(enabled=True, stream_action="flag"))
    ctx = _ctx(stream=True)
    flt = policy.stream_filter(ctx)
    assert flt is not None
    flt.feed(_chunks(["nope"], finish=False))
    flt.flush()  # a stream that ended without a finish chunk is validated at its end
    assert not flt.done and flt.no_store
    assert [d.action for d in ctx.guardrail_decisions] == ["flag"]


def test_retries_mark_the_error_retryable_until_they_are_used_up() -> None:
    policy = OutputSchemaPolicy(OutputSchemaConfig(enabled=True, retries=2))
    ctx = _ctx()
    outcomes = []
    for _ in range(3):
        with pytest.raises(SchemaViolation) as info:
            policy.respond(ctx, _completion("[]"))
        outcomes.append(info.value.retryable)
    assert outcomes == [True, True, False]
    assert [d.action for d in ctx.guardrail_decisions] == ["retry", "retry", "block"]
    policy.on_finalize(ctx)
    with pytest.raises(SchemaViolation) as again:
        policy.respond(ctx, _completion("[]"))
    assert again.value.retryable  # a finished request's count is forgotten
