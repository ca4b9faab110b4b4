"""Two replicas on one Redis: the cache stats count every replica's hits and misses, and a provider-embedded
vector stored by one replica is a semantic hit on the other (through its embedding space's stream)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests

from tests.contract.conftest import require_redis
from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway


def _chat(gw: RunningGateway, system: str, question: str) -> str:
    body = {
        "model": "openai/gpt-4o-mini",
        "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
    }
    resp = requests.post(gw.openai_base + "/chat/completions", json=body, headers=gw.auth(), timeout=20)
    assert resp.status_code == 200, resp.text
    return resp.headers["x-tollgate-cache"]


def _stats(gw: RunningGateway) -> dict:  # type: ignore[type-arg]
    resp = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _until_entries(gw: RunningGateway, n: int) -> None:
    deadline = time.monotonic() + 5
    while _stats(gw)["semantic"]["entries"] < n:  # vectors arrive through the space's stream
        assert time.monotonic() < deadline, "the vectors never reached this replica"
        time.sleep(0.05)


@pytest.mark.slow
def test_replicas_share_counts_and_provider_vectors(fake_openai: FakeServer) -> None:
    url = require_redis()
    prefix = f"tollgate:test-cluster-stats:{uuid.uuid4().hex}:"
    config = (
        "providers:\n"
        f"  openai: {{api_key: sk-test, base_url: '{fake_openai.base_url}/v1'}}\n"
        "models:\n  embed:\n    deployments: [{provider: openai, model: text-embedding-hashed}]\n"
        f"cache:\n  url: {url}\n  key_prefix: '{prefix}'\n"
        "  semantic:\n    enabled: true\n    embedder: provider\n    embedding_model: embed\n"
    )
    system = f"Be brief. [{uuid.uuid4().hex}]"
    try:
        with run_gateway(config) as one, run_gateway(config) as two:
            assert _chat(one, system, "How do I reset my password?") == "miss"
            assert _chat(two, system, "How do I reset my password?") == "hit"
            # Replica two learns the provider's space with its first vector (this miss), then follows its stream.
            assert _chat(two, system, "What is a haiku?") == "miss"
            _until_entries(two, 2)
            assert _chat(two, system, "How can I reset my password, please?") == "semantic-hit"
            with run_gateway(config) as three:  # a replica started later loads the spaces others filled
                _until_entries(three, 2)
                assert _chat(three, system, "How could I reset my password?") == "semantic-hit"

            expected = {"hits": 3, "misses": 2, "semantic_hits": 2, "stores": 2, "skips": 0}
            for gw in (one, two):  # either replica reports the sum; its own process counts stay apart
                deadline = time.monotonic() + 5
                while (stats := _stats(gw))["cluster"]["total"] != expected:  # others send theirs every second
                    assert time.monotonic() < deadline, stats["cluster"]
                    time.sleep(0.1)
                cluster = stats["cluster"]
                assert cluster["by_model"]["openai/gpt-4o-mini"]["hits"] == 3
                assert stats["entries"] == 2 and stats["semantic"]["shared"] is True
            assert _stats(one)["process"]["hits"] == 0 and _stats(two)["process"]["hits"] == 2
            space = _stats(one)["semantic"]["spaces"]
            assert list(space) == ["openai.text-embedding-hashed.256"]
        client = redis.Redis.from_url(url)
        try:
            assert client.exists(prefix + "semantic:openai.text-embedding-hashed.256:log")
        finally:
            client.close()
    finally:
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
