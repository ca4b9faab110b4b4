"""The platform-team demo through the assembled gateway: org → team → key with limits, hammer, chargeback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.gateway import RunningGateway, run_gateway


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[RunningGateway]:
    with run_gateway("", {}, data_dir=str(tmp_path)) as running:  # SQLite in a fresh folder
        yield running


async def _admin(session: aiohttp.ClientSession, gw: RunningGateway, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    async with session.post(gw.base_url + path, json=body, headers=gw.auth()) as resp:
        payload = await resp.json()
        assert resp.status == 201, payload
        return payload  # type: ignore[no-any-return]


async def test_team_key_limits_hold_under_concurrency_and_spend_adds_up(gw: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session:
        await _admin(session, gw, "/admin/orgs", {"id": "acme", "name": "Acme"})
        await _admin(
            session, gw, "/admin/teams", {"id": "research", "org_id": "acme", "name": "Research", "limits": {"rpm": 8}}
        )
        await _admin(session, gw, "/admin/users", {"id": "alice", "team_id": "research", "email": "a@acme.test"})
        key_a = (await _admin(session, gw, "/admin/keys", {"name": "a", "user_id": "alice", "limits": {"rpm": 5}}))[
            "key"
        ]
        key_b = (await _admin(session, gw, "/admin/keys", {"name": "b", "user_id": "alice"}))["key"]

        async def call(key: str) -> tuple[int, dict[str, str]]:
            body = {"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(
                gw.openai_base + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                await resp.read()
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}

        # Key a allows 5 per minute: of 12 concurrent calls exactly 5 pass, never more.
        results = await asyncio.gather(*(call(key_a) for _ in range(12)))
        statuses = sorted(s for s, _ in results)
        assert statuses.count(200) == 5 and statuses.count(429) == 7
        refused = next(h for s, h in results if s == 429)
        assert int(refused["retry-after"]) > 0
        assert refused["x-ratelimit-limit-requests"] == "5"
        # The team allows 8: key b gets the 3 the team has left, whatever key b's own limits.
        results_b = await asyncio.gather(*(call(key_b) for _ in range(6)))
        assert sorted(s for s, _ in results_b).count(200) == 3

        # Every answered request is in the ledger, attributed to the team and org.
        await asyncio.sleep(0.5)  # the ledger writer batches every 200 ms
        async with session.get(gw.base_url + "/admin/spend?by=team&format=json", headers=gw.auth()) as resp:
            assert resp.status == 200, await resp.text()
            report = await resp.json()
    teams = {row["team"]: row for row in report["data"]}
    assert set(teams) == {"research"}  # admin calls are not metered
    research = teams["research"]
    # Refused requests are recorded too (as errors, at cost 0): 8 answered + 10 refused.
    assert (research["requests"], research["errors"]) == (18, 10)
    assert research["output_tokens"] > 0
    assert report["total"]["requests"] == 18
