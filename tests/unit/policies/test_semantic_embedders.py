"""The semantic cache's settings per model and team, its provider embedder, and its one index per embedding space."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from tollgate.config.cache import CacheModelOverride, CacheSettings, CacheTeamOverride, SemanticCacheSettings
from tollgate.config.loader import ConfigError, parse_config
from tollgate.context import RequestContext
from tollgate.policies.cache import CachePolicy
from tollgate.policies.semantic_cache import SemanticCache, SemanticQuery
from tollgate.policies.semantic_embedders import ProviderEmbedder, space_of
from tollgate.state.cache_memory import MemoryCacheStore


def _policy(**settings: object) -> CachePolicy:
    return CachePolicy(MemoryCacheStore(max_entries=10, max_bytes=1 << 16), CacheSettings(**settings))  # type: ignore[arg-type]


def test_a_teams_setting_wins_over_the_models_which_wins_over_the_default() -> None:
    policy = _policy(
        semantic=SemanticCacheSettings(enabled=True, threshold=0.85),
        models={"m": CacheModelOverride(semantic_threshold=0.8), "off": CacheModelOverride(semantic=False)},
        teams={"strict": CacheTeamOverride(semantic_threshold=0.95), "none": CacheTeamOverride(semantic=False)},
    )
    m, off = policy.settings.models["m"], policy.settings.models["off"]
    assert policy.semantic_setting(None, None) == (True, 0.85)
    assert policy.semantic_setting(m, None) == (True, 0.8)
    assert policy.semantic_setting(m, "strict") == (True, 0.95)
    assert policy.semantic_setting(m, "none") == (False, 0.8)
    assert policy.semantic_setting(m, "unknown-team") == (True, 0.8)
    # Each field on its own: a team that sets only a threshold keeps the model's on/off.
    assert policy.semantic_setting(off, "strict") == (False, 0.95)


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="semantic_threshold"):
        CacheTeamOverride(semantic_threshold=1.5)
    with pytest.raises(ValidationError, match="extra"):
        CacheTeamOverride(threshold=0.9)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="needs embedding_model"):
        SemanticCacheSettings(embedder="provider")
    with pytest.raises(ConfigError, match="'nope' is neither in `models:`"):
        parse_config("cache: {semantic: {embedder: provider, embedding_model: nope}}", "t", {})
    config = parse_config(
        "models: {embed: {deployments: [{provider: openai, model: text-embedding-3-small}]}}\n"
        "cache: {semantic: {enabled: true, embedder: provider, embedding_model: embed},"
        " teams: {t1: {semantic: false}}}",
        "t",
        {},
    )
    assert config.cache.teams["t1"].semantic is False
    parse_config("cache: {semantic: {embedder: provider, embedding_model: openai/text-embedding-3-small}}", "t", {})


def _query(text: str) -> SemanticQuery:
    return SemanticQuery("partition", text, 0.8, caller=RequestContext("r1", "openai", "chat", "v1"))


async def test_the_provider_embedder_normalises_and_names_the_space_of_the_deployment_that_answered() -> None:
    seen: list[tuple[str, str | None]] = []
    model = {"name": "openai/text-embedding-3-small"}

    async def call(text: str, caller: RequestContext | None) -> tuple[str, list[float]]:
        seen.append((text, caller.request_id if caller else None))
        return model["name"], [3.0, 4.0] if "a" in text else [4.0, 3.0]

    settings = SemanticCacheSettings(enabled=True, embedder="provider", embedding_model="embed")
    cache = SemanticCache(settings, embed_call=call)
    await cache.start()
    stored = _query("cat")
    await cache.remember(stored, "key-1", 60)
    assert seen == [("cat", "r1")]
    space = space_of("openai/text-embedding-3-small", 2)
    assert space == "openai.text-embedding-3-small.2" and list(cache.indexes) == [space]
    np.testing.assert_allclose(
        cache.indexes[space].search("partition", np.array([0.6, 0.8], np.float32), 0.99)[0][1], 1.0, rtol=1e-6
    )
    assert await cache.search(_query("hat")) == [("key-1", pytest.approx(1.0))]
    # Another model behind the alias (a fallback, a reload): its vectors go to an index of their own, never
    # compared with the first model's.
    model["name"] = "ollama/nomic-embed-text"
    assert await cache.search(_query("bat")) == []
    assert set(cache.indexes) == {space, "ollama.nomic-embed-text.2"}
    assert cache.report()["embedding_calls"] == 3
    await cache.stop()


@pytest.mark.parametrize("answer", ["raise", "zeros", "slow", "too_long"])
async def test_a_failing_provider_embedding_is_a_miss_counted_once_per_request(answer: str) -> None:
    calls = 0

    async def call(text: str, caller: RequestContext | None) -> tuple[str, list[float]]:
        nonlocal calls
        calls += 1
        if answer == "raise":
            raise RuntimeError("provider down")
        if answer == "slow":
            await asyncio.sleep(5)
        return "openai/m", [0.0, 0.0]

    settings = SemanticCacheSettings(
        embedder="provider", embedding_model="embed", embedding_timeout_seconds=0.05, embedding_max_chars=20
    )
    cache = SemanticCache(settings, embed_call=call)
    await cache.start()
    query = _query("x" * 30 if answer == "too_long" else "a question")
    assert await cache.search(query) == []
    await cache.remember(query, "key", 60)  # the failed vector is not asked for again to store the answer
    assert not cache.indexes
    embedder = cache.embedder
    assert isinstance(embedder, ProviderEmbedder)
    if answer == "too_long":
        assert calls == 0 and embedder.failures == 0  # never compared, and not a failure
    else:
        assert calls == 1 and embedder.failures == 1 == cache.embedding_failures()
        assert embedder.error


async def test_each_embedding_space_has_its_own_redis_stream() -> None:
    async def call(text: str, caller: RequestContext | None) -> tuple[str, list[float]]:
        return ("openai/small" if "a" in text else "openai/large"), [1.0, 0.0, 0.0] if "a" in text else [1.0, 0.0]

    settings = SemanticCacheSettings(embedder="provider", embedding_model="embed")
    cache = SemanticCache(settings, redis_url="redis://127.0.0.1:1/0", key_prefix="p:", embed_call=call)
    cache.index_for(space_of("openai/small", 3), 3)
    cache.index_for(space_of("openai/large", 2), 2)
    assert sorted(log.stream for log in cache.logs.values()) == [
        "p:semantic:openai.large.2:log",
        "p:semantic:openai.small.3:log",
    ]
    await cache.stop()


async def test_without_numpy_the_provider_embedder_reports_why_and_embeds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def call(text: str, caller: RequestContext | None) -> tuple[str, list[float]]:
        raise AssertionError("not called")

    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy raises ImportError
    cache = SemanticCache(SemanticCacheSettings(embedder="provider", embedding_model="embed"), embed_call=call)
    await cache.start()
    assert cache.ready is False and "numpy is missing" in str(cache.report()["error"])
    assert await cache.search(_query("a question")) == []
