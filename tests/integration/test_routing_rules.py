"""Routing rules and data residency on a real gateway, with the official OpenAI SDK as the client.

Two fake OpenAI servers stand for a US and an EU region, so what each received proves where requests
went. The EU deployment is made to fail in every way the fakes can (500, 429 with Retry-After, a hang
past the read timeout, a non-OpenAI body, a refused connection, an open breaker): a request pinned to
the EU must then get a 503 ``no_compliant_deployment`` and the US server must have received nothing,
while the same request without the pin falls back to the US (so the setup would leak if residency did).
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import orjson
import pytest

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, free_port, serve
from tests.gateway import RunningGateway, run_gateway

EU_FAILURES = ["500", "429_retry_after", "timeout_before_headers", "garbage", "dead"]
PINNED = {"data-residency": "eu"}


@pytest.fixture(scope="module")
def us() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


@pytest.fixture(scope="module")
def eu() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


def _config(us: FakeServer, eu: FakeServer, routing: str = "") -> str:
    failing = "".join(
        f"  eu-{name}:\n    deployments:\n"
        f"      - {{provider: {'eu-dead' if name == 'dead' else 'eu'}, model: scenario-{name}, region: eu-west-1}}\n"
        "      - {provider: us, model: gpt-4o-mini, region: us-east-1}\n"
        for name in EU_FAILURES
    )
    return (
        "providers:\n"
        f"  us: {{type: openai, api_key: sk-u, base_url: '{us.base_url}/v1', timeouts: {{read: 0.5}}}}\n"
        f"  eu: {{type: openai, api_key: sk-e, base_url: '{eu.base_url}/v1', timeouts: {{read: 0.2}}}}\n"
        f"  eu-dead: {{type: openai, api_key: sk-d, base_url: 'http://127.0.0.1:{free_port()}/v1'}}\n"
        "models:\n"
        "  chat:\n    deployments:\n"
        "      - {provider: us, model: gpt-4o-mini, region: us-east-1, tags: [gold]}\n"
        "      - {provider: eu, model: gpt-4o-mini, region: eu-west-1}\n"
        "  cheap:\n    deployments:\n      - {provider: us, model: gpt-4o-mini-cheap, region: us-east-1}\n"
        f"{failing}"
        "routing:\n"
        "  retries: {max_retries: 2, backoff_base: 0.001}\n"
        "  retry_budget: {ratio: 10, min_retries: 1000}\n"
        "  residency: {zones: {eu: [eu-west-1, eu-central-1]}}\n"
        f"{routing}"
    )


@pytest.fixture(scope="module")
def gw(us: FakeServer, eu: FakeServer) -> Iterator[RunningGateway]:
    rules = (
        "  breaker: {enabled: false}\n"
        "  rules:\n"
        "    - {name: bulk, match: {headers: {x-workload: bulk}}, action: {model: cheap}}\n"
        "    - {name: premium, match: {headers: {x-user-tier: premium}, models: [chat]}, action: {tags: [gold]}}\n"
        "    - {name: eu-header, match: {headers: {x-region: eu}}, action: {residency: eu}}\n"
    )
    with run_gateway(_config(us, eu, rules)) as running:
        yield running


def _client(gw: RunningGateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key or gw.master_key, max_retries=0)


def _models(fake: FakeServer) -> list[str]:
    return [orjson.loads(r.body).get("model") for r in fake.requests if r.path.endswith("/chat/completions")]


def _ask(client: openai.OpenAI, model: str, **extra: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        **extra,  # type: ignore[arg-type]
    )


def test_a_pinned_request_goes_to_the_eu_deployment_even_when_the_us_one_is_first(
    gw: RunningGateway, us: FakeServer, eu: FakeServer
) -> None:
    us_before, eu_before = len(us.requests), len(eu.requests)
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], metadata=PINNED
    )
    assert raw.headers["x-tollgate-deployment"] == "eu/gpt-4o-mini"
    assert raw.parse().choices[0].message.content
    assert len(us.requests) == us_before and len(eu.requests) == eu_before + 1
    # The same through the tags header, and without any pin the first (US) deployment answers.
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-tollgate-tags": "data-residency=eu"},
    )
    assert raw.headers["x-tollgate-deployment"] == "eu/gpt-4o-mini"
    # A gateway-only metadata key pins as well, and is not forwarded to the provider.
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], metadata={"tollgate_data-residency": "eu"}
    )
    assert raw.headers["x-tollgate-deployment"] == "eu/gpt-4o-mini"
    assert "metadata" not in orjson.loads(eu.last.body) and "tollgate" not in eu.last.body.decode()
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-tollgate-deployment"] == "us/gpt-4o-mini"


@pytest.mark.parametrize("failure", EU_FAILURES)
@pytest.mark.parametrize("stream", [False, True])
def test_residency_is_never_violated_when_the_eu_deployment_fails(
    gw: RunningGateway, us: FakeServer, failure: str, stream: bool
) -> None:
    model = f"eu-{failure}"
    us_before = len(us.requests)
    with pytest.raises(openai.APIStatusError) as info:
        _ask(_client(gw), model, metadata=PINNED, stream=stream)
    assert info.value.status_code == 503
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "no_compliant_deployment"
    assert f"'{model}'" in error["message"] and "data residency eu" in error["message"]
    assert "us/gpt-4o-mini" in error["message"]  # says which deployment it did not use, and why
    assert len(us.requests) == us_before  # nothing reached the non-EU deployment, not even a retry
    # Control: unpinned, the very same failure falls back to the US deployment, invisibly to the client.
    answer = _ask(_client(gw), model)
    assert answer.choices[0].message.content
    assert _models(us)[us_before:] == ["gpt-4o-mini"]


def test_the_anthropic_front_door_honours_the_residency_tag(gw: RunningGateway, us: FakeServer) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.master_key, max_retries=0)
    tags = {"x-tollgate-tags": "data-residency=eu"}
    raw = client.messages.with_raw_response.create(
        model="chat", max_tokens=20, messages=[{"role": "user", "content": "hi"}], extra_headers=tags
    )
    assert raw.headers["x-tollgate-deployment"] == "eu/gpt-4o-mini" and raw.parse().content
    us_before = len(us.requests)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="eu-500", max_tokens=20, messages=[{"role": "user", "content": "hi"}], extra_headers=tags
        )
    assert info.value.status_code == 503 and "allowed for data residency eu" in str(info.value.body)
    assert len(us.requests) == us_before


def test_a_rule_pins_residency_from_a_header(gw: RunningGateway, us: FakeServer) -> None:
    us_before = len(us.requests)
    with pytest.raises(openai.APIStatusError) as info:
        _ask(_client(gw), "eu-500", extra_headers={"x-region": "eu"})
    assert info.value.status_code == 503 and "rules matched: eu-header" in str(info.value.body)
    assert len(us.requests) == us_before


def test_caller_metadata_pins_every_request_of_the_key(gw: RunningGateway, us: FakeServer, eu: FakeServer) -> None:
    created = _post_admin(gw, "/admin/keys", {"name": "eu-app", "metadata": PINNED})
    key = created["key"]
    us_before, eu_before = len(us.requests), len(eu.requests)
    raw = _client(gw, key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-tollgate-deployment"] == "eu/gpt-4o-mini"
    # The request asks for the US; the key's pin still applies, so nothing complies with both.
    with pytest.raises(openai.APIStatusError) as info:
        _ask(_client(gw, key), "chat", metadata={"data-residency": "us"})
    assert info.value.status_code == 503
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "no_compliant_deployment"
    with pytest.raises(openai.APIStatusError) as info:
        _ask(_client(gw, key), "us/gpt-4o-mini")  # a direct address has no region
    assert info.value.status_code == 503
    assert len(us.requests) == us_before and len(eu.requests) == eu_before + 1


def test_header_rules_retarget_and_restrict(gw: RunningGateway, us: FakeServer, eu: FakeServer) -> None:
    before = len(us.requests)
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-workload": "bulk"}
    )
    assert raw.headers["x-tollgate-deployment"] == "us/gpt-4o-mini-cheap"
    assert _models(us)[before:] == ["gpt-4o-mini-cheap"]
    # premium: only 'gold' deployments (the US one), even when pinned elsewhere there is nothing left.
    raw = _client(gw).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-user-tier": "premium"}
    )
    assert raw.headers["x-tollgate-deployment"] == "us/gpt-4o-mini"
    with pytest.raises(openai.APIStatusError) as info:
        _ask(_client(gw), "chat", extra_headers={"x-user-tier": "premium", "x-region": "eu"})
    assert info.value.status_code == 503 and "premium" in str(info.value.body)


def test_explain_reports_rules_and_why_each_candidate_was_skipped(gw: RunningGateway, us: FakeServer) -> None:
    before = len(us.requests)
    out = _post_admin(
        gw,
        "/v1/route/explain",
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "metadata": PINNED},
        {"x-user-tier": "premium"},
    )
    assert out["rules_matched"] == ["premium"] and out["residency"] == ["eu"]
    assert out["residency_regions"] == {"eu": ["eu-central-1", "eu-west-1"]}
    assert [r["rule"] for r in out["rules"] if r["matched"]] == ["premium"]
    bulk = next(r for r in out["rules"] if r["rule"] == "bulk")
    assert bulk["matched"] is False and "header x-workload: bulk" in bulk["why"]
    reasons = {c["deployment"]: c for c in out["candidates"]}
    assert reasons["us/gpt-4o-mini"]["excluded_by"] == "residency"
    assert "eu-west-1" in reasons["us/gpt-4o-mini"]["skip_reason"]
    assert reasons["eu/gpt-4o-mini"]["excluded_by"] == "rule" and "gold" in reasons["eu/gpt-4o-mini"]["skip_reason"]
    assert out["outcome"] == "fail_fast_503" and out["error_code"] == "no_compliant_deployment"
    assert len(us.requests) == before


def test_an_open_eu_breaker_fails_fast_with_no_compliant_deployment(us: FakeServer, eu: FakeServer) -> None:
    with run_gateway(_config(us, eu, "  breaker: {consecutive_failures: 2, open_seconds: 60}\n")) as gw:
        us_before = len(us.requests)
        for _ in range(2):
            with pytest.raises(openai.APIStatusError):
                _ask(_client(gw), "eu-500", metadata=PINNED)
        eu_calls = len(eu.requests)
        with pytest.raises(openai.APIStatusError) as info:
            _ask(_client(gw), "eu-500", metadata=PINNED)
        assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "60"
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "no_compliant_deployment"
        assert "circuit breaker open" in info.value.body["message"]
        assert len(eu.requests) == eu_calls and len(us.requests) == us_before


def _post_admin(gw: RunningGateway, path: str, body: object, headers: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    import urllib.request

    req = urllib.request.Request(
        gw.base_url + path,
        data=orjson.dumps(body),
        headers={"content-type": "application/json", **gw.auth(), **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read())  # type: ignore[no-any-return]


def test_a_spent_retry_budget_still_answers_no_compliant_deployment(us: FakeServer, eu: FakeServer) -> None:
    config = (
        _config(us, eu).replace(
            "  retry_budget: {ratio: 10, min_retries: 1000}\n", "  retry_budget: {ratio: 0, min_retries: 0}\n"
        )
        + "  breaker: {enabled: false}\n"
    )
    config = config.replace(
        "models:\n",
        "models:\n  eu-pair:\n    deployments:\n"
        "      - {provider: eu, model: scenario-500, region: eu-west-1}\n"
        "      - {provider: eu, model: gpt-4o-mini, region: eu-central-1}\n"
        "      - {provider: us, model: gpt-4o-mini, region: us-east-1}\n",
        1,
    )
    with run_gateway(config) as gw:
        us_before, eu_before = len(us.requests), len(eu.requests)
        with pytest.raises(openai.APIStatusError) as info:
            _ask(_client(gw), "eu-pair", metadata=PINNED)
        # No room for a second call (not even to the other EU deployment), and none to the US.
        assert info.value.status_code == 503
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "no_compliant_deployment"
        assert len(eu.requests) == eu_before + 1 and len(us.requests) == us_before
