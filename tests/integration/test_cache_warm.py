"""Warming the response cache from prepared answers: POST /admin/cache/warm and `tollgate cache warm`."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import requests

from tests.fakes.harness import FakeServer
from tests.gateway import RunningGateway, run_gateway

MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def gw(fake_openai: FakeServer) -> Iterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-upstream", "OPENAI_BASE_URL": fake_openai.base_url + "/v1"}
    with run_gateway("", env) as running:
        yield running


def _admin(gw: RunningGateway, path: str, body: object, key: str | None = None) -> requests.Response:
    return requests.post(gw.base_url + path, json=body, headers=gw.auth(key), timeout=30)


def _org_key(gw: RunningGateway) -> tuple[str, str]:
    """A fresh org with one team and one key in it: (org id, clear key)."""
    s = uuid.uuid4().hex[:8]
    made = _admin(gw, "/admin/orgs", {"id": f"warm-org-{s}", "name": f"Warm {s}"})
    assert made.status_code == 201, made.text
    org = made.json()["id"]
    team = _admin(gw, "/admin/teams", {"id": f"warm-team-{s}", "org_id": org, "name": f"T {s}"}).json()["id"]
    key = _admin(gw, "/admin/keys", {"name": "app", "team_id": team}).json()["key"]
    return org, key


def test_warmed_answers_are_hits_for_their_org_only(gw: RunningGateway, fake_openai: FakeServer) -> None:
    org, key = _org_key(gw)
    _, other_key = _org_key(gw)
    question = f"What are the opening hours? [{uuid.uuid4().hex}]"
    entries = [
        {"model": MODEL, "prompt": question, "answer": "We are open 9 to 5.", "params": {"temperature": 0}},
        {"model": MODEL, "prompt": "sampled", "answer": "not stored"},  # no temperature 0 / seed
        {"model": "nobody/nothing", "prompt": "x", "answer": "y", "params": {"temperature": 0}},
    ]
    answer = _admin(gw, "/admin/cache/warm", {"entries": entries, "org": org})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["stored"] == 1 and report["scope"] == f"org:{org}"
    assert [item["index"] for item in report["skipped"]] == [1, 2]
    assert "temperature 0" in report["skipped"][0]["reason"]

    calls = len(fake_openai.requests)
    client = openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    hit = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    assert hit.headers["x-tollgate-cache"] == "hit"
    assert hit.parse().choices[0].message.content == "We are open 9 to 5."
    assert len(fake_openai.requests) == calls  # the provider was not asked

    stream = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "We are open 9 to 5."

    other = openai.OpenAI(base_url=gw.openai_base, api_key=other_key, max_retries=0)
    miss = other.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    assert miss.headers["x-tollgate-cache"] == "miss"  # another org never gets these entries


def test_bad_warm_requests_get_clear_errors(gw: RunningGateway) -> None:
    org, key = _org_key(gw)
    entry = {"model": MODEL, "prompt": "q", "answer": "a", "params": {"temperature": 0}}
    no_scope = _admin(gw, "/admin/cache/warm", {"entries": [entry]})
    assert no_scope.status_code == 400 and "'org'" in no_scope.json()["error"]["message"]
    bad = _admin(gw, "/admin/cache/warm", {"entries": [{"model": MODEL, "answer": "a"}], "org": org})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "entries[0].messages"
    assert _admin(gw, "/admin/cache/warm", {"entries": []}).status_code == 400
    assert _admin(gw, "/admin/cache/warm", {"entries": [entry], "org": org}, key).status_code == 403


@pytest.mark.slow
def test_the_cli_warms_from_a_json_lines_file(gw: RunningGateway, tmp_path: Path) -> None:
    org, key = _org_key(gw)
    questions = [f"question {i} [{uuid.uuid4().hex}]" for i in range(5)]
    lines = [
        orjson.dumps({"model": MODEL, "prompt": q, "answer": f"answer {i}", "params": {"seed": 7}}).decode()
        for i, q in enumerate(questions)
    ]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "TOLLGATE_MASTER_KEY": gw.master_key}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tollgate",
            "cache",
            "--url",
            gw.base_url,
            "warm",
            str(path),
            "--org",
            org,
            "--batch",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == {"stored": 5, "skipped": []}
    client = openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
    hit = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": questions[3]}], seed=7
    )
    assert hit.headers["x-tollgate-cache"] == "hit" and hit.parse().choices[0].message.content == "answer 3"
