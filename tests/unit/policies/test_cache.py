"""The exact cache policy: what is in the key, when it looks up and stores, stream accumulation and replay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tollgate.config.cache import CacheModelOverride, CacheSettings
from tollgate.context import Principal, RequestContext
from tollgate.policies.cache import (
    CachedAnswer,
    CachePolicy,
    CompletionAccumulator,
    RecordingStream,
    ReplayStream,
    cache_key,
    decode_entry,
    encode_entry,
    is_deterministic,
    replay_chunks,
    scope_id_of,
)
from tollgate.providers.base import Deployment
from tollgate.routing.resolver import Route
from tollgate.state.cache_memory import MemoryCacheStore
from tollgate.types import JSONObject, JSONValue
from tollgate.wire.openai import Usage

GPT = Deployment(provider="openai", provider_type="openai", model="gpt-4o-mini", base_url="http://x")
CLAUDE = Deployment(provider="anthropic", provider_type="anthropic", model="claude-haiku-4-5", base_url="http://y")
ROUTE = Route("fast", (GPT,), logical=True)
ALICE = Principal("k-alice", "alice", "user", user_id="alice", team_id="t1", org_id="acme")
BOB = Principal("k-bob", "bob", "user", user_id="bob", team_id="t2", org_id="acme")
EVE = Principal("k-eve", "eve", "user", user_id="eve", team_id="t9", org_id="evil")


def body(**extra: JSONValue) -> JSONObject:
    return {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra}


def ctx(principal: Principal | None = ALICE, metadata: JSONObject | None = None) -> RequestContext:
    c = RequestContext(request_id="r1", front_door="openai", endpoint="chat", config_version="v1")
    c.principal = principal
    c.metadata = metadata
    return c


def key(b: JSONObject, route: Route = ROUTE, scope: str = "org:acme") -> str:
    return cache_key("openai", route, scope, b)


def test_key_is_stable_and_ignores_what_does_not_change_the_answer() -> None:
    base = key(body())
    assert len(base) == 64 and base == key(dict(reversed(list(body().items()))))
    assert key(body(stream=True, stream_options={"include_usage": True})) == base
    assert key(body(metadata={"tag": "x"}, user="u-1", model="other-alias")) == base
    assert key(body(top_p=None)) == base  # a null field is an absent one
    # A single text part is the same message as a plain string; cache_control hints change nothing.
    parts = body(messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": None}]}])
    assert key(parts) == base


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "none"},
        {"response_format": {"type": "json_object"}},
        {"temperature": 0.5},
        {"top_p": 0.9},
        {"seed": 1},
        {"max_tokens": 10},
        {"max_completion_tokens": 10},
        {"stop": ["\n"]},
        {"n": 2},
        {"some_future_field": True},
    ],
)
def test_everything_that_changes_the_answer_changes_the_key(change: JSONObject) -> None:
    assert key({**body(), **change}) != key(body())


def test_route_format_and_scope_are_in_the_key() -> None:
    base = key(body())
    assert key(body(), route=Route("fast", (CLAUDE,), logical=True)) != base
    assert key(body(), route=Route("fast", (GPT, CLAUDE), logical=True)) != base
    assert key(body(), scope="org:evil") != base
    assert cache_key("anthropic", ROUTE, "org:acme", body()) != base


def test_determinism() -> None:
    assert is_deterministic({"temperature": 0})
    assert is_deterministic({"temperature": 0.0})
    assert is_deterministic({"temperature": 1.2, "seed": 3})
    assert not is_deterministic({})  # providers sample at temperature 1 by default
    assert not is_deterministic({"temperature": 0.2})
    assert not is_deterministic({"temperature": False, "seed": True})


def test_scope_ids() -> None:
    assert scope_id_of("org", ALICE) == scope_id_of("org", BOB) == "org:acme"
    assert scope_id_of("team", ALICE) == "team:t1" != scope_id_of("team", BOB)
    assert scope_id_of("key", ALICE) == "key:k-alice"
    assert scope_id_of("global", EVE) == "global"
    orphan = Principal("k-lone", "lone", "user")
    assert scope_id_of("org", orphan) == scope_id_of("team", orphan) == "key:k-lone"  # never shared by accident


def policy(**settings: object) -> CachePolicy:
    return CachePolicy(MemoryCacheStore(max_entries=100, max_bytes=1 << 20), CacheSettings(**settings))  # type: ignore[arg-type]


COMPLETION: JSONObject = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
}
USAGE = Usage(prompt_tokens=10, completion_tokens=3)


async def test_store_then_hit_within_the_scope_only() -> None:
    cache = policy()
    plan = cache.plan(ctx(ALICE), "openai", body(), ROUTE, {})
    assert plan is not None and plan.lookup and plan.store
    assert await cache.lookup(ctx(ALICE), plan, ROUTE) is None and plan.status == "miss"
    await cache.save(plan, COMPLETION, USAGE)
    bob = ctx(BOB)
    bob_plan = cache.plan(bob, "openai", body(), ROUTE, {})
    assert bob_plan is not None
    answer = await cache.lookup(bob, bob_plan, ROUTE)  # same org: shared
    assert answer == CachedAnswer(COMPLETION, USAGE)
    assert bob.cache_hit and bob.usage == USAGE and bob_plan.header == (b"x-tollgate-cache", b"hit")
    eve = ctx(EVE)
    eve_plan = cache.plan(eve, "openai", body(), ROUTE, {})
    assert eve_plan is not None and await cache.lookup(eve, eve_plan, ROUTE) is None and not eve.cache_hit
    stats = (await cache.report())["by_scope"]
    assert stats["org:acme"] == {  # type: ignore[comparison-overlap]
        "hits": 1,
        "misses": 1,
        "stores": 1,
        "skips": 0,
        "semantic_hits": 0,
        "tokens_saved": 13,
        "usd_saved": 0.0,
    }
    assert plan.tags == ("model:fast", "org:acme", "team:t1", "key:k-alice")


@pytest.mark.parametrize(
    ("headers", "lookup", "store"),
    [
        ({}, True, True),
        ({b"cache-control": b"no-cache"}, False, True),
        ({b"cache-control": b"max-age=0, no-store"}, False, False),
        ({b"x-tollgate-cache": b"skip"}, False, False),
        ({b"x-tollgate-cache": b"Refresh"}, False, True),
    ],
)
def test_client_control(headers: dict[bytes, bytes], lookup: bool, store: bool) -> None:
    plan = policy().plan(ctx(), "openai", body(), ROUTE, headers)
    assert plan is not None and (plan.lookup, plan.store) == (lookup, store)


def test_sampled_requests_overrides_and_ttl() -> None:
    sampled = body(temperature=0.7)
    plan = policy().plan(ctx(), "openai", sampled, ROUTE, {})
    assert plan is not None and not plan.lookup and not plan.store
    plan = policy(cache_nondeterministic=True).plan(ctx(), "openai", sampled, ROUTE, {})
    assert plan is not None and plan.lookup and plan.store
    assert policy(enabled=False).plan(ctx(), "openai", body(), ROUTE, {}) is None
    on_for_one = policy(enabled=False, models={"fast": CacheModelOverride(enabled=True, ttl_seconds=5)})
    plan = on_for_one.plan(ctx(), "openai", body(), ROUTE, {})
    assert plan is not None and plan.ttl_seconds == 5
    plan = policy().plan(ctx(metadata={"tollgate_cache_ttl": "90"}), "openai", body(), ROUTE, {})
    assert plan is not None and plan.ttl_seconds == 90
    plan = policy().plan(ctx(metadata={"tollgate_cache_ttl": 0}), "openai", body(), ROUTE, {})
    assert plan is not None and plan.lookup and not plan.store


async def test_unfinished_or_filtered_answers_are_not_stored() -> None:
    cache = policy()
    plan = cache.plan(ctx(), "openai", body(), ROUTE, {})
    assert plan is not None
    unfinished = {**COMPLETION, "choices": [{"index": 0, "message": {"content": "Hel"}, "finish_reason": None}]}
    blocked = {**COMPLETION, "choices": [{"index": 0, "message": {"content": ""}, "finish_reason": "content_filter"}]}
    for completion in (unfinished, blocked, {**COMPLETION, "choices": []}):
        await cache.save(plan, completion, USAGE)
    assert (await cache.store.stats()).entries == 0


def _chunk(delta: JSONObject, finish: str | None = None, index: int = 0) -> JSONObject:
    return {
        "id": "c1",
        "model": "m",
        "created": 5,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


STREAM: list[list[JSONObject]] = [
    [_chunk({"role": "assistant", "content": ""})],
    [_chunk({"content": "Hel"}), _chunk({"content": "lo"})],
    [
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        )
    ],
    [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]})],
    [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]})],
    [_chunk({}, "tool_calls")],
    [{"id": "c1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}],
]


def test_accumulator_builds_the_completion_and_replay_round_trips() -> None:
    acc = CompletionAccumulator()
    for piece in STREAM:
        acc.feed(piece)
    completion = acc.completion()
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            "finish_reason": "tool_calls",
        }
    ]
    chunks = replay_chunks(CachedAnswer(completion, Usage(4, 2)))
    again = CompletionAccumulator()
    again.feed(chunks)
    assert again.completion()["choices"] == completion["choices"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert decode_entry(encode_entry(completion, Usage(4, 2))) == CachedAnswer(completion, Usage(4, 2))
    assert decode_entry(b"not json") is None and decode_entry(b'{"v": 99}') is None


class Source:
    def __init__(self, pieces: list[list[JSONObject]], fail_at: int | None = None) -> None:
        self.pieces = pieces
        self.fail_at = fail_at
        self.usage: Usage | None = Usage(4, 2)

    async def __aiter__(self) -> AsyncIterator[list[JSONObject]]:
        for i, piece in enumerate(self.pieces):
            if i == self.fail_at:
                raise RuntimeError("upstream went away")
            yield piece

    async def aclose(self) -> None:
        return None


async def _drain(stream: RecordingStream | ReplayStream) -> list[list[JSONObject]]:
    return [piece async for piece in stream]


async def test_recording_stores_only_complete_uncut_streams() -> None:
    stored: list[JSONObject] = []
    complete = RecordingStream(Source(STREAM), lambda: False, lambda c, u: stored.append(c))
    assert await _drain(complete) == STREAM and len(stored) == 1
    cut = RecordingStream(Source(STREAM), lambda: True, lambda c, u: stored.append(c))
    await _drain(cut)
    failing = RecordingStream(Source(STREAM, fail_at=3), lambda: False, lambda c, u: stored.append(c))
    with pytest.raises(RuntimeError):
        await _drain(failing)
    assert len(stored) == 1


async def test_replay_stream_is_one_piece_with_the_usage() -> None:
    replay = ReplayStream(CachedAnswer(COMPLETION, USAGE))
    pieces = await _drain(replay)
    assert len(pieces) == 1 and replay.usage == USAGE
    assert pieces[0][0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}  # type: ignore[index]
    assert pieces[0][1]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
