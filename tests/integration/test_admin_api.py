"""The admin API through a real gateway: RBAC for every role, validation, audit records, rotation, deleted teams."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.gateway import RunningGateway, run_gateway
from tollgate.state.keys import hash_key

DEMO = "demo/tollgate-demo"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with run_gateway() as running:
        yield running


@dataclass
class Client:
    gw: RunningGateway
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, key: str | None = None, body: object = None, raw: bytes | None = None
    ) -> tuple[int, Json]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        async with self.session.request(method, self.gw.base_url + path, data=data, headers=self.gw.auth(key)) as r:
            return r.status, orjson.loads(await r.read())

    async def ok(self, method: str, path: str, key: str | None = None, body: object = None) -> Json:
        status, payload = await self.call(method, path, key, body)
        assert status in (200, 201), (status, payload)
        return payload

    async def chat(self, key: str, model: str = DEMO) -> tuple[int, Json]:
        return await self.call(
            "POST", "/v1/chat/completions", key, {"model": model, "messages": [{"role": "user", "content": "x"}]}
        )


@pytest.fixture
async def client(gw: RunningGateway) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(gw, session)


@dataclass
class Tree:
    """One org with two teams, made fresh for each test (ids carry a unique suffix)."""

    s: str  # the suffix
    org: str
    pay: str
    ops: str
    keys: dict[str, str]  # role → clear key: admin, team_admin (of pay), viewer, user (of pay)
    key_ids: dict[str, str]
    pay_key_id: str  # a plain key of team pay
    ops_key_id: str  # a plain key of team ops


@pytest.fixture
async def tree(client: Client) -> Tree:
    s = uuid.uuid4().hex[:8]
    org = (await client.ok("POST", "/admin/orgs", body={"id": f"acme-{s}", "name": f"Acme {s}"}))["id"]
    pay = (await client.ok("POST", "/admin/teams", body={"id": f"pay-{s}", "org_id": org, "name": "Payments"}))["id"]
    ops = (await client.ok("POST", "/admin/teams", body={"id": f"ops-{s}", "org_id": org, "name": "Ops"}))["id"]
    await client.ok(
        "POST",
        "/admin/users",
        body={"id": f"alice-{s}", "team_id": pay, "email": f"alice-{s}@x.io", "role": "team_admin"},
    )
    await client.ok("POST", "/admin/users", body={"id": f"bob-{s}", "team_id": pay, "name": "Bob"})
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for role, body in (
        ("admin", {"name": "root", "role": "admin"}),
        ("team_admin", {"name": "lead", "user_id": f"alice-{s}", "role": "team_admin"}),
        ("viewer", {"name": "finance", "role": "viewer"}),
        ("user", {"name": "app", "user_id": f"bob-{s}"}),
    ):
        made = await client.ok("POST", "/admin/keys", body=body)
        keys[role], key_ids[role] = made["key"], made["id"]
    pay_key = await client.ok("POST", "/admin/keys", body={"name": "pay-svc", "team_id": pay})
    ops_key = await client.ok("POST", "/admin/keys", body={"name": "ops-svc", "team_id": ops})
    return Tree(s, org, pay, ops, keys, key_ids, pay_key["id"], ops_key["id"])


# Each case: what is tried, and the status each role gets. A 403 always says why.
CASES: list[tuple[str, str, str, object, dict[str, int]]] = [
    ("list keys", "GET", "/admin/keys", None, {"admin": 200, "team_admin": 200, "viewer": 200, "user": 403}),
    (
        "create org",
        "POST",
        "/admin/orgs",
        {"name": "Org {s} {role}"},
        {"admin": 201, "team_admin": 403, "viewer": 403, "user": 403},
    ),
    (
        "create team",
        "POST",
        "/admin/teams",
        {"org_id": "{org}", "name": "T {role}"},
        {"admin": 201, "team_admin": 403, "viewer": 403, "user": 403},
    ),
    (
        "create user in own team",
        "POST",
        "/admin/users",
        {"team_id": "{pay}"},
        {"admin": 201, "team_admin": 201, "viewer": 403, "user": 403},
    ),
    ("create user elsewhere", "POST", "/admin/users", {"team_id": "{ops}"}, {"admin": 201, "team_admin": 403}),
    (
        "create viewer user",
        "POST",
        "/admin/users",
        {"team_id": "{pay}", "role": "viewer"},
        {"admin": 201, "team_admin": 403},
    ),
    (
        "create key in own team",
        "POST",
        "/admin/keys",
        {"team_id": "{pay}"},
        {"admin": 201, "team_admin": 201, "viewer": 403, "user": 403},
    ),
    ("create key elsewhere", "POST", "/admin/keys", {"team_id": "{ops}"}, {"admin": 201, "team_admin": 403}),
    (
        "create admin key",
        "POST",
        "/admin/keys",
        {"team_id": "{pay}", "role": "admin"},
        {"admin": 201, "team_admin": 403},
    ),
    (
        "read own team's key",
        "GET",
        "/admin/keys/{pay_key}",
        None,
        {"admin": 200, "team_admin": 200, "viewer": 200, "user": 403},
    ),
    ("read other team's key", "GET", "/admin/keys/{ops_key}", None, {"admin": 200, "team_admin": 403, "viewer": 200}),
    (
        "limit own team's key",
        "PATCH",
        "/admin/keys/{pay_key}",
        {"limits": {"rpm": 5}},
        {"admin": 200, "team_admin": 200, "viewer": 403, "user": 403},
    ),
    ("limit other team's key", "PATCH", "/admin/keys/{ops_key}", {"limits": {"rpm": 5}}, {"team_admin": 403}),
    (
        "rotate an admin's key",
        "POST",
        "/admin/keys/{admin_key}/rotate",
        None,
        {"team_admin": 403, "viewer": 403, "user": 403},
    ),
    (
        "change a team",
        "PATCH",
        "/admin/teams/{pay}",
        {"budget": {"limit_usd": 9}},
        {"admin": 200, "team_admin": 403, "viewer": 403},
    ),
    ("read own team", "GET", "/admin/teams/{pay}", None, {"admin": 200, "team_admin": 200, "viewer": 200, "user": 403}),
    ("read other team", "GET", "/admin/teams/{ops}", None, {"team_admin": 403, "viewer": 200}),
    ("list users", "GET", "/admin/users", None, {"admin": 200, "team_admin": 200, "viewer": 200, "user": 403}),
    ("delete a team", "DELETE", "/admin/teams/{ops}", None, {"team_admin": 403, "viewer": 403, "user": 403}),
    ("read the audit log", "GET", "/admin/audit", None, {"admin": 200, "team_admin": 403, "viewer": 200, "user": 403}),
]


def _fill(value: object, tree: Tree, role: str) -> object:
    subs = {
        "{s}": tree.s,
        "{org}": tree.org,
        "{pay}": tree.pay,
        "{ops}": tree.ops,
        "{role}": role,
        "{pay_key}": tree.pay_key_id,
        "{ops_key}": tree.ops_key_id,
        "{admin_key}": tree.key_ids["admin"],
    }
    if isinstance(value, str):
        for k, v in subs.items():
            value = value.replace(k, v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, tree, role) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("what", "method", "path", "body", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_rbac_matrix(
    client: Client, tree: Tree, what: str, method: str, path: str, body: object, expected: dict[str, int]
) -> None:
    for role, want in expected.items():
        status, payload = await client.call(
            method, str(_fill(path, tree, role)), tree.keys[role], _fill(body, tree, role)
        )
        assert status == want, (what, role, payload)
        if want == 403:
            message = payload["error"]["message"]
            assert payload["error"]["type"] == "permission_error", payload
            assert "role" in message or "own team" in message, payload


async def test_team_admin_sees_only_its_team(client: Client, tree: Tree) -> None:
    keys = (await client.ok("GET", "/admin/keys", tree.keys["team_admin"]))["data"]
    assert {k["team_id"] for k in keys} == {tree.pay}
    assert all("key" not in k and "key_hash" not in k for k in keys)
    teams = (await client.ok("GET", "/admin/teams", tree.keys["team_admin"]))["data"]
    assert [t["id"] for t in teams] == [tree.pay]
    status, _ = await client.call("GET", f"/admin/keys?team_id={tree.ops}", tree.keys["team_admin"])
    assert status == 403


async def test_team_admin_reads_its_own_teams_spend_only(client: Client, tree: Tree) -> None:
    ops_key = (await client.ok("POST", "/admin/keys", body={"name": "ops-app", "team_id": tree.ops}))["key"]
    for key in (tree.keys["user"], tree.keys["user"], ops_key):  # two requests of team pay, one of ops
        assert (await client.chat(key))[0] == 200
    lead = tree.keys["team_admin"]
    report: Json = {}
    for _ in range(50):  # the ledger writer batches every 200 ms
        report = await client.ok("GET", "/admin/spend?by=user", lead)
        if report["total"]["requests"] >= 2:
            break
        await asyncio.sleep(0.1)
    assert report["team"] == tree.pay
    assert [(line["user"], line["requests"]) for line in report["data"]] == [(f"bob-{tree.s}", 2)]
    # The whole gateway's view (admin, filtered to the team) says the same.
    admin_view = await client.ok("GET", f"/admin/spend?by=user&team={tree.pay}", tree.keys["admin"])
    assert admin_view["total"] == report["total"]
    ops_view = await client.ok("GET", f"/admin/spend?by=key&team={tree.ops}", tree.keys["viewer"])
    assert ops_view["total"]["requests"] == 1

    status, payload = await client.call("GET", f"/admin/spend?team={tree.ops}", lead)
    assert status == 403 and "own team" in payload["error"]["message"]
    status, payload = await client.call("GET", "/admin/spend?by=org", lead)
    assert status == 400 and "within team" in payload["error"]["message"]
    status, payload = await client.call("GET", "/admin/spend", tree.keys["user"])
    assert status == 403 and payload["error"]["code"] == "insufficient_role"
    async with client.session.get(
        client.gw.base_url + "/admin/spend?by=day&format=csv", headers=client.gw.auth(lead)
    ) as resp:
        assert resp.status == 200
        assert f"team-{tree.pay}" in resp.headers["content-disposition"]
        assert (await resp.text()).splitlines()[-1].startswith("TOTAL,2,")


async def test_every_role_may_call_models(client: Client, tree: Tree) -> None:
    for role, key in tree.keys.items():
        status, payload = await client.chat(key)
        assert status == 200, (role, payload)


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        ("/admin/keys", {"limits": {"rpm": -1}}, "limits.rpm", "whole number from 1"),
        ("/admin/keys", {"limits": {"rpm": 10**12}}, "limits.rpm", "whole number"),
        ("/admin/keys", {"limits": {"rps": 1}}, "limits.rps", "not a limit"),
        ("/admin/keys", {"budget": {"limit_usd": -5}}, "budget.limit_usd", "from 0"),
        ("/admin/keys", {"budget": {"limit_usd": 1e15}}, "budget.limit_usd", "from 0"),
        ("/admin/keys", {"budget": {"limit_usd": 5, "period": "hourly"}}, "budget.period", "one of"),
        ("/admin/keys", {"role": "owner"}, "role", "one of"),
        ("/admin/keys", {"allowed_models": "gpt-4o"}, "allowed_models", "array"),
        ("/admin/keys", {"expires_in_seconds": -3}, "expires_in_seconds", "positive"),
        ("/admin/keys", {"nmae": "typo"}, "nmae", "Unknown field"),
        ("/admin/orgs", {}, "name", "required"),
        ("/admin/orgs", {"name": "x", "id": "has space"}, "id", "letters"),
        ("/admin/teams", {"name": "x"}, "org_id", "required"),
        ("/admin/users", {"team_id": "t", "email": "not-an-email"}, "email", "email"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(
    client: Client, path: str, body: object, param: str, fragment: str
) -> None:
    status, payload = await client.call("POST", path, body=body)
    assert status == 400, payload
    assert payload["error"]["param"] == param
    assert fragment in payload["error"]["message"]


async def test_bad_json_unknown_ids_and_duplicates(client: Client, tree: Tree) -> None:
    status, payload = await client.call("POST", "/admin/orgs", raw=b"{nope")
    assert status == 400 and "not valid JSON" in payload["error"]["message"]
    for method, path in (
        ("GET", "/admin/teams/nope"),
        ("PATCH", "/admin/orgs/nope"),
        ("DELETE", "/admin/users/nope"),
        ("GET", "/admin/keys/key_nope"),
        ("POST", "/admin/keys/key_nope/rotate"),
        ("POST", "/admin/keys/key_nope/revoke"),
    ):
        status, payload = await client.call(method, path, body={} if method == "PATCH" else None)
        assert status == 404, (method, path, payload)
        assert "nope" in payload["error"]["message"]
    status, payload = await client.call("POST", "/admin/teams", body={"org_id": "missing", "name": "x"})
    assert status == 404 and payload["error"]["param"] == "org_id"
    status, payload = await client.call("POST", "/admin/teams", body={"id": tree.pay, "org_id": tree.org, "name": "y"})
    assert status == 409 and payload["error"]["param"] == "id"
    status, payload = await client.call("POST", "/admin/teams", body={"org_id": tree.org, "name": "PAYMENTS"})
    assert status == 409 and payload["error"]["param"] == "name"
    status, payload = await client.call("POST", "/admin/orgs", body={"name": f"acme {tree.s}"})
    assert status == 409
    status, _ = await client.call("PUT", f"/admin/teams/{tree.pay}")
    assert status == 405


async def test_deleting_a_team_makes_its_keys_unusable(client: Client, tree: Tree) -> None:
    made = await client.ok("POST", "/admin/keys", body={"name": "doomed", "team_id": tree.ops})
    assert (await client.chat(made["key"]))[0] == 200
    deleted = await client.ok("DELETE", f"/admin/teams/{tree.ops}")
    assert deleted["deleted_at"]
    status, payload = await client.chat(made["key"])
    assert status == 401
    assert f"team '{tree.ops}'" in payload["error"]["message"] and "deleted" in payload["error"]["message"]
    assert (await client.call("GET", f"/admin/teams/{tree.ops}"))[0] == 404
    listed = (await client.ok("GET", f"/admin/teams?org_id={tree.org}&include_deleted=true"))["data"]
    assert {t["id"] for t in listed} == {tree.pay, tree.ops}
    # Keys of other teams are untouched.
    assert (await client.chat(tree.keys["user"]))[0] == 200


async def test_allow_lists_of_every_level_apply(client: Client, tree: Tree) -> None:
    await client.ok("PATCH", f"/admin/teams/{tree.pay}", body={"allowed_models": ["demo/*", "openai/*"]})
    key = (await client.ok("POST", "/admin/keys", body={"team_id": tree.pay, "allowed_models": ["tollgate-*"]}))["key"]
    assert (await client.chat(key))[0] == 200
    await client.ok("PATCH", f"/admin/orgs/{tree.org}", body={"allowed_models": ["openai/*"]})
    status, payload = await client.chat(key)
    assert status == 403 and DEMO in payload["error"]["message"]
    status, models = await client.call("GET", "/v1/models", key)
    assert status == 200 and DEMO not in {m["id"] for m in models["data"]}
    await client.ok("PATCH", f"/admin/orgs/{tree.org}", body={"allowed_models": None})
    assert (await client.chat(key))[0] == 200


async def test_audit_records_before_and_after_without_secrets(client: Client, tree: Tree) -> None:
    start = time.time()
    made = await client.ok("POST", "/admin/keys", tree.keys["team_admin"], {"name": "audited", "team_id": tree.pay})
    key_id = made["id"]
    await client.ok(
        "PATCH", f"/admin/keys/{key_id}", tree.keys["team_admin"], {"limits": {"rpm": 7}, "metadata": {"cc": "9"}}
    )
    rotated = await client.ok("POST", f"/admin/keys/{key_id}/rotate", tree.keys["team_admin"])
    await client.ok("POST", f"/admin/keys/{key_id}/revoke")
    status, raw = await _raw(client, f"/admin/audit?target={key_id}", tree.keys["viewer"])
    assert status == 200
    for secret in (made["key"], rotated["key"], hash_key(made["key"]), hash_key(rotated["key"])):
        assert secret not in raw
    records = orjson.loads(raw)["data"]
    assert [r["action"] for r in records] == ["key.revoke", "key.rotate", "key.update", "key.create"]
    revoke, rotate, update, create = records
    assert create["actor"] == {"key_id": tree.key_ids["team_admin"], "role": "team_admin"}
    assert revoke["actor"] == {"key_id": "master", "role": "admin"}
    assert create["before"] is None and create["after"]["name"] == "audited"
    assert update["before"]["limits"] == {} and update["after"]["limits"] == {"rpm": 7}
    assert update["after"]["metadata"] == {"cc": "9"}
    assert rotate["before"]["key_hint"] != rotate["after"]["key_hint"] and rotate["after"]["rotated_at"]
    assert revoke["before"]["revoked_at"] is None and revoke["after"]["revoked_at"]
    assert all(start - 1 <= r["at"] <= time.time() + 1 and r["request_id"] for r in records)
    by_actor = (await client.ok("GET", f"/admin/audit?actor={tree.key_ids['team_admin']}"))["data"]
    assert {r["action"] for r in by_actor} == {"key.create", "key.update", "key.rotate"}
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert (await client.ok("GET", f"/admin/audit?since={iso}"))["data"] == []
    status, payload = await client.call("GET", "/admin/audit?since=yesterday")
    assert status == 400 and payload["error"]["param"] == "since"


async def _raw(client: Client, path: str, key: str) -> tuple[int, str]:
    async with client.session.get(client.gw.base_url + path, headers=client.gw.auth(key)) as r:
        return r.status, await r.text()


async def test_rotation_end_to_end_with_the_openai_sdk(client: Client, tree: Tree) -> None:
    made = await client.ok(
        "POST",
        "/admin/keys",
        body={"name": "sdk", "team_id": tree.pay, "allowed_models": ["tollgate-*"], "limits": {"rpm": 100}},
    )
    old = openai.AsyncOpenAI(base_url=client.gw.openai_base, api_key=made["key"], max_retries=0)
    answer = await old.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    rotated = await client.ok("POST", f"/admin/keys/{made['id']}/rotate")
    assert rotated["id"] == made["id"] and rotated["key"] != made["key"]
    assert rotated["allowed_models"] == ["tollgate-*"] and rotated["limits"] == {"rpm": 100}
    with pytest.raises(openai.AuthenticationError):
        await old.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
    new = openai.AsyncOpenAI(base_url=client.gw.openai_base, api_key=rotated["key"], max_retries=0)
    answer = await new.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    # Same settings: the allow-list still holds for the new secret.
    with pytest.raises(openai.PermissionDeniedError, match="demo/other-model"):
        await new.chat.completions.create(model="demo/other-model", messages=[{"role": "user", "content": "hi"}])
    await old.close()
    await new.close()


async def test_key_update_expiry_and_revoke(client: Client, tree: Tree) -> None:
    made = await client.ok("POST", "/admin/keys", body={"name": "short", "team_id": tree.pay})
    await client.ok("PATCH", f"/admin/keys/{made['id']}", body={"expires_in_seconds": 1})
    await asyncio.sleep(1.1)  # the key's own expiry, not a timing assertion
    status, payload = await client.chat(made["key"])
    assert status == 401 and "expired" in payload["error"]["message"]
    await client.ok("PATCH", f"/admin/keys/{made['id']}", body={"expires_at": None})
    assert (await client.chat(made["key"]))[0] == 200
    await client.ok("POST", f"/admin/keys/{made['id']}/revoke")
    status, payload = await client.call("PATCH", f"/admin/keys/{made['id']}", body={"name": "x"})
    assert status == 409
    status, payload = await client.chat(made["key"])
    assert status == 401 and "revoked" in payload["error"]["message"]
