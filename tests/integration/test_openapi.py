"""GET /admin/openapi.json through a real gateway, and the document checked against the gateway's behaviour:
the roles it declares are the roles the gateway lets through, the body fields it declares are the fields the
gateway accepts, and real answers (successes and errors) match the schemas declared for their status."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.gateway import RunningGateway, run_gateway
from tollgate.api.openapi import ROLES_EXTENSION, document

Json = dict[str, Any]
ROLES = ("admin", "team_admin", "viewer", "user")


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with run_gateway() as running:
        yield running


class Api:
    def __init__(self, gw: RunningGateway, session: aiohttp.ClientSession, doc: Json) -> None:
        self.gw, self.session, self.doc = gw, session, doc

    async def call(
        self, method: str, path: str, key: str | None = "master", body: object = None
    ) -> tuple[int, str, bytes]:
        headers = {} if key is None else self.gw.auth(None if key == "master" else key)
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.gw.base_url + path, data=data, headers=headers) as r:
            return r.status, r.headers.get("content-type", ""), await r.read()

    def schema(self, method: str, template: str, status: int) -> Json:
        """The schema declared for this operation's answer with this status (failing when none is)."""
        responses = self.doc["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template} answered {status}, which it does not declare"
        answer = responses[str(status)]
        if "$ref" in answer:
            answer = self.doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
        schema: Json = answer["content"]["application/json"]["schema"]
        return schema

    async def checked(
        self, method: str, template: str, key: str | None = "master", body: object = None, **ids: str
    ) -> tuple[int, Json]:
        """Call the operation and validate the answer against the declared schema for its status."""
        status, ctype, raw = await self.call(method, template.format(**ids), key, body)
        assert ctype.startswith("application/json"), (method, template, status, ctype)
        payload = orjson.loads(raw)
        declared = self.schema(method, template.split("?")[0], status)
        validator = Draft202012Validator({"components": self.doc["components"], **declared})
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(payload)]
        assert not errors, (method, template, status, errors, payload)
        return status, payload


@pytest.fixture
async def api(gw: RunningGateway) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        status, _, raw = await Api(gw, session, {}).call("GET", "/admin/openapi.json", key=None)
        assert status == 200
        yield Api(gw, session, orjson.loads(raw))


async def _keys(api: Api, s: str) -> tuple[dict[str, str], Json]:
    """An org, a team, a team_admin user and one key per role; returns the keys and the made ids."""
    _, org = await api.checked("POST", "/admin/orgs", body={"id": f"o-{s}", "name": f"Org {s}"})
    _, team = await api.checked("POST", "/admin/teams", body={"id": f"t-{s}", "org_id": org["id"], "name": "T"})
    _, lead = await api.checked(
        "POST",
        "/admin/users",
        body={"id": f"u-{s}", "team_id": team["id"], "role": "team_admin", "email": f"a-{s}@x.io"},
    )
    keys: dict[str, str] = {}
    ids: Json = {"orgs": org["id"], "teams": team["id"], "users": lead["id"]}
    for role in ROLES:
        body: Json = {"name": role, "role": role}
        if role == "team_admin":
            body["user_id"] = lead["id"]
        status, made = await api.checked("POST", "/admin/keys", body=body)
        assert status == 201
        keys[role] = made["key"]
        ids["keys"] = made["id"]
    return keys, ids


def _id_for(path: str, ids: Json) -> str:
    """The id made for this path's kind (``/admin/teams/{id}`` → the team), for paths that take one."""
    parts = path.split("/")
    return str(ids.get(parts[2], "")) if len(parts) > 3 else ""


def _operations(doc: Json) -> list[tuple[str, str, Json]]:
    return [(m.upper(), path, op) for path, item in doc["paths"].items() for m, op in item.items()]


async def test_the_document_is_served_without_a_key_and_is_valid(api: Api) -> None:
    status, ctype, raw = await api.call("GET", "/admin/openapi.json", key=None)
    assert status == 200 and ctype.startswith("application/json")
    served = orjson.loads(raw)
    assert served == orjson.loads(orjson.dumps(document()))
    validate(served)
    # A key is not needed, but one does no harm (a client configured with a key for everything).
    assert (await api.call("GET", "/admin/openapi.json"))[0] == 200


async def test_declared_roles_are_the_roles_the_gateway_lets_through(api: Api) -> None:
    keys, _ = await _keys(api, uuid.uuid4().hex[:8])
    checked = 0
    for method, path, op in _operations(api.doc):
        roles = op.get(ROLES_EXTENSION)
        if roles is None:
            continue
        url = path.replace("{id}", "no-such-id")
        body = {} if "requestBody" in op else None
        status, _, raw = await api.call(method, url, key=None, body=body)
        assert status == 401, (method, path, status)
        for role in ROLES:
            status, _, raw = await api.call(method, url, key=keys[role], body=body)
            refused = status == 403 and orjson.loads(raw)["error"]["code"] == "insufficient_role"
            assert refused == (role not in roles), (method, path, role, status, raw[:300])
            checked += 1
    assert checked >= 4 * 30


async def test_closed_bodies_declare_exactly_the_fields_the_gateway_accepts(api: Api) -> None:
    _, ids = await _keys(api, uuid.uuid4().hex[:8])
    closed = 0
    for method, path, op in _operations(api.doc):
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if schema.get("additionalProperties") is not False:
            continue
        status, payload = await api.checked(method, path, body={"zz_typo": 1}, id=_id_for(path, ids))
        assert status == 400 and payload["error"]["param"] == "zz_typo", (method, path, payload)
        listed = re.search(r"Allowed fields: (.*)\.$", payload["error"]["message"])
        assert listed, payload
        assert listed.group(1).split(", ") == sorted(schema["properties"]), (method, path)
        for name in schema.get("required", []):
            assert name in schema["properties"], (method, path, name)
        closed += 1
    assert closed >= 8  # create and update of orgs, teams, users and keys


async def test_real_answers_match_their_declared_schemas(api: Api) -> None:
    s = uuid.uuid4().hex[:8]
    keys, ids = await _keys(api, s)
    demo = {"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "hi"}]}
    # Successes: every admin read, changes, rotation and revocation, reports, routing, probes.
    for method, path, body, want in (
        ("GET", "/admin/orgs", None, 200),
        ("GET", "/admin/orgs/{id}", None, 200),
        ("PATCH", "/admin/teams/{id}", {"budget": {"limit_usd": 5, "period": "daily"}, "limits": {"rpm": 9}}, 200),
        ("GET", "/admin/teams", None, 200),
        ("GET", "/admin/users/{id}", None, 200),
        ("GET", "/admin/users", None, 200),
        ("GET", "/admin/keys", None, 200),
        ("GET", "/admin/keys/{id}", None, 200),
        ("PATCH", "/admin/keys/{id}", {"expires_in_seconds": 3600, "allowed_models": ["gpt-4o*"]}, 200),
        ("POST", "/admin/keys/{id}/rotate", None, 200),
        ("POST", "/admin/keys/{id}/revoke", None, 200),
        ("GET", "/admin/audit", None, 200),
        ("GET", "/admin/spend", None, 200),
        ("GET", "/admin/overview", None, 200),
        ("GET", "/admin/models", None, 200),
        ("GET", "/admin/cache/stats", None, 200),
        ("POST", "/admin/cache/invalidate", {"team": ids["teams"]}, 200),
        ("POST", "/v1/route/explain", demo, 200),
        ("GET", "/health", None, 200),
        ("GET", "/health/ready", None, 200),
        ("DELETE", "/admin/users/{id}", None, 200),
    ):
        status, payload = await api.checked(method, path, body=body, id=_id_for(path, ids))
        assert status == want, (method, path, status, payload)
    # Spend after real traffic: lines carry the group under the `by` key and still match.
    async with api.session.post(
        api.gw.base_url + "/v1/chat/completions", json=demo, headers=api.gw.auth(keys["viewer"])
    ) as r:
        assert r.status == 200
    for _ in range(200):  # the ledger is written after the answer (FINALIZE runs off the request path)
        status, report = await api.checked("GET", "/admin/spend?by=model", "master")
        if report["data"]:
            break
        await asyncio.sleep(0.025)
    assert status == 200 and "model" in report["data"][0], report
    # Errors: each in the declared OpenAI shape.
    for method, path, key, body, want in (
        ("POST", "/admin/orgs", "master", {"name": ""}, 400),
        ("POST", "/admin/orgs", "master", {"id": ids["orgs"], "name": "again"}, 409),
        ("GET", "/admin/keys", None, None, 401),
        ("GET", "/admin/keys", "tg-not-a-key", None, 401),
        ("POST", "/admin/reload", keys["viewer"], None, 403),
        ("GET", "/admin/orgs/{id}", "master", None, 404),
        ("POST", "/admin/reload", "master", None, 400),
        ("GET", "/admin/overview?days=0", "master", None, 400),
        ("POST", "/admin/keys/{id}/rotate", "master", None, 409),  # revoked above
    ):
        target = {"id": "no-such-org"} if want == 404 else {"id": _id_for(path, ids)}
        status, payload = await api.checked(method, path, key, body, **target)
        assert status == want, (method, path, status, payload)
