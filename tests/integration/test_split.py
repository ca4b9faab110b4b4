"""Traffic split on a real gateway: sticky arms, the arm in headers, the ledger and metrics, fallback kept."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway
from tests.integration.test_resilience import _ask
from tollgate.policies.ledger import LedgerPolicy
from tollgate.state.ledger import LedgerRow


@pytest.fixture
def second_openai() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


def _config(a: str, b: str, sticky: str, b_model: str = "gpt-4o-mini") -> str:
    return (
        "providers:\n"
        f"  a: {{type: openai, api_key: sk-a, base_url: '{a}/v1'}}\n"
        f"  b: {{type: openai, api_key: sk-b, base_url: '{b}/v1'}}\n"
        "models:\n  exp:\n"
        f"    split: {{sticky: {sticky}}}\n"
        "    deployments:\n"
        "      - {provider: a, model: gpt-4o-mini, weight: 3}\n"
        f"      - {{provider: b, model: {b_model}, weight: 1}}\n"
    )


def _rows(gw: RunningGateway, request_id: str) -> list[LedgerRow]:
    store = gw.app.gateway.storage.ledger
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows: list[LedgerRow] = asyncio.run(store.rows_for_request(request_id))
        if rows:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def test_sticky_users_keep_their_arm_and_the_arm_is_recorded(
    fake_openai: FakeServer, second_openai: FakeServer
) -> None:
    with run_gateway(_config(fake_openai.base_url, second_openai.base_url, "user")) as gw:
        assert any(isinstance(p, LedgerPolicy) for p in gw.app.gateway.pipeline.finalize)
        arms: dict[str, str] = {}
        for round_ in range(3):
            for i in range(30):
                resp = _ask(gw, "exp", user=f"user-{i}")
                assert resp.status_code == 200
                arm = resp.headers["x-tollgate-arm"]
                assert resp.headers["x-tollgate-deployment"] == arm  # both healthy: the arm answers
                assert arms.setdefault(f"user-{i}", arm) == arm, f"user-{i} changed arm in round {round_}"
        assert set(arms.values()) == {"a/gpt-4o-mini", "b/gpt-4o-mini"}
        # The arm is a ledger tag (comparable per arm without a migration), and a metrics label.
        resp = _ask(gw, "exp", user="user-0")
        (row,) = _rows(gw, resp.headers["x-request-id"])
        assert row.tags["tollgate_arm"] == arms["user-0"]
        with urllib.request.urlopen(gw.base_url + "/metrics", timeout=10) as m:
            text = m.read().decode()
        per_arm = {
            s.labels["arm"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "tollgate_routing_decisions_total" and s.labels["model"] == "exp"
        }
        counted = {arm: 3 * sum(1 for a in arms.values() if a == arm) for arm in set(arms.values())}
        counted[arms["user-0"]] += 1
        assert per_arm == counted
        # Explain shows the arm the named user gets.
        body = _explain_for(gw, "user-7")
        assert body["split"]["arm"] == arms["user-7"] and body["chosen"] == arms["user-7"]
        assert [a["share"] for a in body["split"]["arms"]] == [0.75, 0.25]


def _explain_for(gw: RunningGateway, user: str) -> dict:  # type: ignore[type-arg]
    import orjson

    from tests.integration.test_resilience import _post

    body = {"model": "exp", "user": user, "messages": [{"role": "user", "content": "hi"}]}
    return orjson.loads(_post(gw.base_url + "/v1/route/explain", body, gw.auth()).text)  # type: ignore[no-any-return]


def test_a_failing_arm_falls_back_but_the_request_stays_in_its_arm(
    fake_openai: FakeServer, second_openai: FakeServer
) -> None:
    # Arm b answers 500: its users are served by a, and still counted (and tagged) as arm b.
    failing = "b/gpt-4o-mini-scenario-500"
    config = _config(fake_openai.base_url, second_openai.base_url, "user", "gpt-4o-mini-scenario-500")
    with run_gateway(config + "routing:\n  breaker: {enabled: false}\n  retry_budget: {min_retries: 100}\n") as gw:
        in_b = []
        for i in range(40):
            resp = _ask(gw, "exp", user=f"u{i}")
            assert resp.status_code == 200
            if resp.headers["x-tollgate-arm"] == failing:
                assert resp.headers["x-tollgate-deployment"] == "a/gpt-4o-mini"
                assert resp.headers["x-tollgate-fallback"] == "true"
                in_b.append(resp.headers["x-request-id"])
            else:
                assert "x-tollgate-fallback" not in resp.headers
        assert in_b, "no user was assigned to arm b"
        (row,) = _rows(gw, in_b[0])
        assert row.tags["tollgate_arm"] == failing and row.provider == "a"


def test_sticky_by_key_gives_one_arm_to_every_request_of_a_key(
    fake_openai: FakeServer, second_openai: FakeServer
) -> None:
    with run_gateway(_config(fake_openai.base_url, second_openai.base_url, "key")) as gw:
        seen = {_ask(gw, "exp", user=f"u{i}").headers["x-tollgate-arm"] for i in range(20)}
        assert len(seen) == 1


def test_a_client_cannot_set_the_arm_tag(fake_openai: FakeServer) -> None:
    config = (
        f"providers:\n  openai: {{api_key: sk-o, base_url: '{fake_openai.base_url}/v1'}}\n"
        "models:\n  plain:\n    deployments:\n      - {provider: openai, model: gpt-4o-mini}\n"
    )
    with run_gateway(config) as gw:
        resp = _ask(gw, "plain", metadata={"tollgate_arm": "forged", "team": "x"})
        assert resp.status_code == 200 and "x-tollgate-arm" not in resp.headers
        (row,) = _rows(gw, resp.headers["x-request-id"])
        assert "tollgate_arm" not in row.tags and row.tags.get("team") == "x"
