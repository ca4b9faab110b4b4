"""The semantic cache with a provider's embeddings (``embedder: provider``), and its thresholds per model and team.

The embeddings model is a deployment of the fake OpenAI server whose ``/v1/embeddings`` returns hashed
bag-of-words vectors (tests/fakes/openai_server.py): texts sharing their content words are similar, so the
tests know each pair's similarity. The gateway calls it through its own routing and adapters; the fake's request
log shows those calls, and the ledger records them for the caller.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import openai
import pytest
import requests

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway
from tollgate.policies.ledger import CACHE_EMBEDDING_ENDPOINT, CACHE_EMBEDDING_FOR_TAG
from tollgate.state.ledger import LedgerRow

CHAT = "openai/gpt-4o-mini"
EMBED = "openai/text-embedding-hashed"


def _config(fake: FakeServer, embed_model: str = "text-embedding-hashed", extra: str = "") -> str:
    return (
        "providers:\n"
        f"  openai: {{api_key: sk-test, base_url: '{fake.base_url}/v1'}}\n"
        "models:\n"
        f"  embed:\n    deployments: [{{provider: openai, model: {embed_model}}}]\n"
        "pricing:\n  models:\n"
        f"    openai/{embed_model}: {{input: 1000, output: 0}}\n"  # $0.001 per token: visible in the ledger
        "cache:\n  semantic:\n    enabled: true\n    embedder: provider\n    embedding_model: embed\n" + extra
    )


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    extra = (
        "  models:\n    openai/gpt-4o-mini: {semantic_threshold: 0.75}\n"
        "  teams:\n"
        "    strict-team: {semantic_threshold: 0.9}\n"
        "    no-semantic-team: {semantic: false}\n"
    )
    with run_gateway(_config(fake_openai, extra=extra)) as running:
        yield running


def _marker() -> str:
    return f"You are a helpful assistant. [{uuid.uuid4().hex}]"


def _embedding_calls(fake: FakeServer, text: str, since: int) -> int:
    """Embeddings calls for ``text`` among the fake's requests from index ``since`` (the fake serves every test)."""
    return sum(1 for r in fake.requests[since:] if r.path.endswith("/embeddings") and text.encode() in r.body)


def _chat_calls(fake: FakeServer, marker: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions") and marker.encode() in r.body)


def _admin(gw: RunningGateway, path: str, body: dict[str, object]) -> dict[str, object]:
    resp = requests.post(gw.base_url + path, json=body, headers=gw.auth(), timeout=10)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()  # type: ignore[no-any-return]


def _ledger_rows(gw: RunningGateway, request_id: str) -> list[LedgerRow]:
    """The ledger rows of a request, once the writer has flushed them (it batches off the request path)."""
    store = gw.app.gateway.storage.ledger
    deadline = time.monotonic() + 5
    while True:
        rows = asyncio.run(store.rows_for_request(request_id))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_paraphrase_hits_through_the_providers_embeddings(gw: RunningGateway, fake_openai: FakeServer) -> None:
    suffix = uuid.uuid4().hex[:8]
    _admin(gw, "/admin/orgs", {"id": f"org-{suffix}", "name": f"org-{suffix}"})
    _admin(gw, "/admin/teams", {"id": f"team-{suffix}", "org_id": f"org-{suffix}", "name": f"team-{suffix}"})
    key = str(_admin(gw, "/admin/keys", {"name": "app", "team_id": f"team-{suffix}"})["key"])
    client = openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
    system = _marker()
    since = len(fake_openai.requests)

    def ask(question: str, request_id: str) -> object:
        return client.chat.completions.with_raw_response.create(
            model=CHAT,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            temperature=0,
            extra_headers={"x-request-id": request_id},
        )

    first_id, second_id = f"sem-{suffix}-1", f"sem-{suffix}-2"
    first = ask("How do I reset my password?", first_id)
    second = ask("How can I reset my password, please?", second_id)
    assert first.headers["x-tollgate-cache"] == "miss"  # type: ignore[attr-defined]
    assert second.headers["x-tollgate-cache"] == "semantic-hit"  # type: ignore[attr-defined]
    assert float(second.headers["x-tollgate-cache-similarity"]) >= 0.99  # type: ignore[attr-defined]
    assert second.parse().choices[0].message.content == "Hello from the fake OpenAI."  # type: ignore[attr-defined]
    assert _chat_calls(fake_openai, system) == 1
    # One embeddings call per request (the miss's vector is reused to store its answer), in the OpenAI wire format.
    assert _embedding_calls(fake_openai, "How do I reset my password?", since) == 1
    assert _embedding_calls(fake_openai, "How can I reset my password, please?", since) == 1

    # Each embeddings call is a ledger row of its own, attributed to the caller, priced, tagged with the request.
    for request_id, text in (
        (first_id, "How do I reset my password?"),
        (second_id, "How can I reset my password, please?"),
    ):
        rows = _ledger_rows(gw, f"{request_id}:cache-embedding")
        assert len(rows) == 1, request_id
        row = rows[0]
        assert row.endpoint == CACHE_EMBEDDING_ENDPOINT and row.status == 200
        assert (row.team_id, row.org_id) == (f"team-{suffix}", f"org-{suffix}") and row.key_id
        assert (row.provider, row.upstream_model, row.requested_model) == ("openai", "text-embedding-hashed", "embed")
        assert row.input_tokens == len(text) // 4 + 1 and row.cost_nanos == row.input_tokens * 1000 * 1000
        assert row.tags[CACHE_EMBEDDING_FOR_TAG] == request_id
    # The chat request's own row: the miss is priced, the hit costs nothing.
    assert _ledger_rows(gw, second_id)[0].cache_hit is True

    stats = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(), timeout=10).json()["semantic"]
    assert (stats["embedder"], stats["model"], stats["ready"]) == ("provider", "embed", True)
    assert stats["embedding_calls"] >= 2 and stats["embedding_failures"] == 0
    # Vectors live in the index of the model that made them and its dimension.
    assert stats["spaces"]["openai.text-embedding-hashed.256"]["entries"] >= 1


def test_thresholds_per_team_win_over_the_models(gw: RunningGateway, fake_openai: FakeServer) -> None:
    suffix = uuid.uuid4().hex[:8]
    org = f"org-{suffix}"
    _admin(gw, "/admin/orgs", {"id": org, "name": org})
    keys = {}
    for team in ("strict-team", "no-semantic-team", f"plain-{suffix}"):
        _admin(gw, "/admin/teams", {"id": team, "org_id": org, "name": team})
        keys[team] = str(_admin(gw, "/admin/keys", {"name": team, "team_id": team})["key"])
    system = _marker()

    def ask(team: str, question: str) -> str:
        body = {
            "model": CHAT,
            "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        }
        resp = requests.post(gw.openai_base + "/chat/completions", json=body, headers=gw.auth(keys[team]), timeout=20)
        assert resp.status_code == 200, resp.text
        return resp.headers["x-tollgate-cache"]

    # Same org (cache.scope org): every team may share the entry. The paraphrase adds one content word, so
    # its similarity is 2/sqrt(6) = 0.816: under the default 0.85, over the model's 0.75, under the team's 0.9.
    assert ask(f"plain-{suffix}", "How do I reset my password?") == "miss"
    assert ask("strict-team", "How do I reset my password quickly?") == "miss"  # team 0.9 beats model 0.75
    assert ask("no-semantic-team", "Reset my password quickly.") == "miss"  # semantic off for the team
    assert ask(f"plain-{suffix}", "How would I reset my password quickly?") == "semantic-hit"  # the model's 0.75
    assert _chat_calls(fake_openai, system) == 3


@pytest.mark.parametrize(
    ("embed_model", "extra", "error"),
    [
        ("text-embedding-hashed-scenario-500", "", "ProviderUnavailableError"),
        ("text-embedding-hashed-scenario-timeout_before_headers", "    embedding_timeout_seconds: 0.3\n", "Timeout"),
    ],
)
def test_a_failing_embeddings_call_is_a_counted_miss(
    fake_openai: FakeServer, embed_model: str, extra: str, error: str
) -> None:
    system = _marker()
    with run_gateway(_config(fake_openai, embed_model, extra)) as gw:
        body = {
            "model": CHAT,
            "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "What is a haiku?"}],
        }
        statuses = []
        for _ in range(2):
            resp = requests.post(gw.openai_base + "/chat/completions", json=body, headers=gw.auth(), timeout=20)
            assert resp.status_code == 200, resp.text
            statuses.append(resp.headers["x-tollgate-cache"])
        assert statuses == ["miss", "hit"]  # the exact cache still works
        stats = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(), timeout=10).json()["semantic"]
        assert stats["embedding_failures"] == 1 and error in stats["error"]
        metrics = requests.get(gw.base_url + "/metrics", headers=gw.auth(), timeout=10).text
        assert "tollgate_semantic_cache_embedding_failures_total 1.0" in metrics
    assert _chat_calls(fake_openai, system) == 1
