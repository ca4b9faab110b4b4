"""A ``budget_remaining`` routing rule on a real gateway: a team's requests go to the expensive model while
its budget is high and to the cheaper one once its spend crosses the threshold.

The team and its budget are made through the admin API; the fake OpenAI server reports 5 completion tokens
per answer, and the pricing config makes those cost real money ($0.05 on gpt-4o, $0.0005 on gpt-4o-mini),
so the budget moves only by what the gateway really charges. Which deployment answered is read from the
``x-tollgate-model`` header and from the fake server's own log; ``/v1/route/explain`` shows what the rule saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from aiohttp import ClientSession

from tests.fakes import openai_server
from tests.fakes.harness import FakeServer, serve
from tests.gateway import RunningGateway, run_gateway


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    with serve(openai_server.make_app()) as server:
        yield server


def _config(upstream: FakeServer) -> str:
    return (
        "providers:\n"
        f"  openai: {{api_key: sk-test, base_url: '{upstream.base_url}/v1'}}\n"
        "models:\n"
        "  smart:\n    deployments: [{provider: openai, model: gpt-4o}]\n"
        "  cheap:\n    deployments: [{provider: openai, model: gpt-4o-mini}]\n"
        "pricing:\n  models:\n"
        "    openai/gpt-4o: {input: 0, output: 10000}\n"  # $0.01 per output token
        "    openai/gpt-4o-mini: {input: 0, output: 100}\n"
        "routing:\n  rules:\n"
        "    - name: save-money\n"
        "      match: {models: [smart], budget_remaining: {scope: team, below_usd: 0.1}}\n"
        "      action: {model: cheap}\n"
    )


async def _admin(session: ClientSession, gw: RunningGateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(gw.base_url + path, json=body, headers=gw.auth()) as resp:
        payload: dict[str, Any] = await resp.json()
        assert resp.status == 201, payload
        return payload


async def _explain(session: ClientSession, gw: RunningGateway, key: str) -> dict[str, Any]:
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    async with session.post(gw.openai_base + "/route/explain", json=body, headers=gw.auth(key)) as resp:
        payload: dict[str, Any] = await resp.json()
        assert resp.status == 200, payload
        return payload


@pytest.mark.slow
async def test_a_team_moves_to_the_cheap_model_once_its_budget_runs_low(upstream: FakeServer) -> None:
    with run_gateway(_config(upstream)) as gw:
        async with ClientSession() as session:
            await _admin(session, gw, "/admin/orgs", {"id": "acme", "name": "Acme"})
            budget = {"limit_usd": 0.2, "period": "monthly"}
            await _admin(
                session, gw, "/admin/teams", {"id": "research", "org_id": "acme", "name": "R", "budget": budget}
            )
            key = (await _admin(session, gw, "/admin/keys", {"name": "svc", "team_id": "research"}))["key"]
            # An admin of the same team asks for explanations: the rule sees the caller's team budget.
            admin = (await _admin(session, gw, "/admin/keys", {"name": "ops", "team_id": "research", "role": "admin"}))[
                "key"
            ]

            # Nothing is known on this replica yet: the rule does not match, and explain says why.
            decision = await _explain(session, gw, admin)
            assert decision["target"] is None and decision["rules_matched"] == []
            [rule] = decision["rules"]
            assert rule["matched"] is False
            assert rule["why"] == "does not hold: team budget remaining below $0.10"
            assert rule["observed"][0]["unknown"] is True
            assert rule["observed"][0]["budgets"] == [
                {
                    "period": "monthly",
                    "limit_usd": 0.2,
                    "remaining_usd": None,
                    "level": "unknown: this replica has not reserved on this budget in the current period",
                }
            ]

            client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
            served: list[str] = []
            remaining: list[str] = []
            for _ in range(5):
                raw = await client.chat.completions.with_raw_response.create(
                    model="smart", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
                raw.parse()
                assert raw.headers["x-tollgate-provider"] == "openai"
                served.append(raw.headers["x-tollgate-model"])
                remaining.append(raw.headers["x-tollgate-budget-remaining-usd"])
            # $0.20: three answers of gpt-4o ($0.05 each) leave $0.05, under the $0.10 threshold.
            assert served == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
            assert remaining[:3] == ["0.150000", "0.100000", "0.050000"]
            # The fake upstream saw the same thing.
            models = [orjson.loads(r.body)["model"] for r in upstream.requests if r.path.endswith("/chat/completions")]
            assert models[-5:] == served

            decision = await _explain(session, gw, admin)
            assert decision["target"] == "cheap" and decision["rules_matched"] == ["save-money"]
            assert decision["chosen"] == "openai/gpt-4o-mini"
            [rule] = decision["rules"]
            assert rule["matched"] is True and rule["why"] == "every condition holds"
            [observed] = rule["observed"]
            assert observed["holds"] is True
            [seen] = observed["budgets"]
            assert seen["below"] is True and seen["remaining_usd"] == 0.049  # $0.05 - 2 x $0.0005
            assert 0 <= seen["seen_seconds_ago"] < 60
