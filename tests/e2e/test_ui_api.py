"""What the admin UI stands on, over real HTTP: the static files at /ui and the admin endpoints it added
(``/admin/overview``, ``/admin/models``). The browser itself is driven in test_ui_browser.py."""

from __future__ import annotations

import http.client
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest
import requests

from tests.gateway import RunningGateway, run_gateway
from tollgate.api.admin_overview import quantile_ms

MODEL = "demo/tollgate-demo"
CALLS = 3


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    config = "pricing:\n  models:\n    demo/tollgate-demo: {input: 0, output: 0, per_request: 0.1}\n"
    with run_gateway(config, {}) as running:
        client = openai.OpenAI(base_url=running.openai_base, api_key=running.master_key, max_retries=0)
        for i in range(CALLS):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q{i}"}])
        deadline = time.monotonic() + 10
        while _get(running, "/admin/overview?days=1").json()["total"]["requests"] < CALLS:
            assert time.monotonic() < deadline, "the ledger did not record the calls"
            time.sleep(0.05)
        yield running


def _get(gw: RunningGateway, path: str, key: str | None = None, **headers: str) -> requests.Response:
    return requests.get(gw.base_url + path, headers={**gw.auth(key), **headers}, timeout=10)


def _raw_get(gw: RunningGateway, path: str) -> tuple[int, bytes]:
    """A request line sent as is (requests would normalise ``..`` away)."""
    host, port = gw.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_ui_page_is_served_with_a_strict_policy(gw: RunningGateway) -> None:
    response = requests.get(gw.base_url + "/ui", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/app.js">' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert requests.get(gw.base_url + "/ui/", timeout=10).text == response.text


def test_assets_have_their_types_and_revalidate_by_etag(gw: RunningGateway) -> None:
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("logo.svg", "image/svg+xml")]:
        response = requests.get(f"{gw.base_url}/ui/{name}", timeout=10)
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(kind)
        again = requests.get(
            f"{gw.base_url}/ui/{name}", headers={"If-None-Match": response.headers["etag"]}, timeout=10
        )
        assert again.status_code == 304
        assert again.content == b""


def test_nothing_outside_the_ui_folder_is_served(gw: RunningGateway) -> None:
    for path in ["/ui/nope.js", "/ui/__init__.py", "/ui/../api/ui.py", "/ui/%2e%2e/api/ui.py", "/ui/sub/app.js"]:
        status, body = _raw_get(gw, path)
        assert status == 404, path
        assert b'"error"' in body
    assert requests.post(gw.base_url + "/ui/app.js", timeout=10).status_code == 405


def test_the_page_references_only_the_gateway(gw: RunningGateway) -> None:
    for name in ["index.html", "app.js", "dom.js", "charts.js", "app.css"]:
        text = requests.get(f"{gw.base_url}/ui/{name}", timeout=10).text
        assert "https://" not in text, name  # no CDN, no web fonts
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name


def test_overview_days_are_complete_and_add_up(gw: RunningGateway) -> None:
    body = _get(gw, "/admin/overview?days=7").json()
    today = datetime.now(UTC).date()
    assert [d["day"] for d in body["days"]] == [(today - timedelta(days=6 - i)).isoformat() for i in range(7)]
    assert body["since"] == body["days"][0]["day"]
    assert body["until"] == today.isoformat()
    total = body["total"]
    assert total["requests"] == sum(d["requests"] for d in body["days"]) >= CALLS
    assert total["cost_nanousd"] == sum(d["cost_nanousd"] for d in body["days"])
    assert total["cost_nanousd"] >= CALLS * 100_000_000
    spend = _get(gw, f"/admin/spend?by=day&since={body['since']}&until={body['until']}").json()
    assert spend["total"]["cost_usd"] == total["cost_usd"]
    assert spend["total"]["requests"] == total["requests"]


def test_overview_latency_counts_model_calls_only(gw: RunningGateway) -> None:
    latency: dict[str, Any] = _get(gw, "/admin/overview").json()["latency"]
    assert latency["scope"] == "process"
    assert latency["count"] == CALLS  # the admin calls made meanwhile are not model calls
    assert sum(b["count"] for b in latency["buckets"]) == CALLS
    assert latency["buckets"][-1]["le_ms"] is None
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]


def test_overview_days_parameter_is_checked(gw: RunningGateway) -> None:
    for bad in ["0", "367", "-1", "abc", "1.5"]:
        response = _get(gw, f"/admin/overview?days={bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["param"] == "days"
    assert len(_get(gw, "/admin/overview?days=366").json()["days"]) == 366


def test_overview_and_models_need_an_admin_or_viewer_key(gw: RunningGateway) -> None:
    viewer = requests.post(
        gw.base_url + "/admin/keys", json={"name": "v", "role": "viewer"}, headers=gw.auth(), timeout=10
    ).json()["key"]
    user = requests.post(gw.base_url + "/admin/keys", json={"name": "u"}, headers=gw.auth(), timeout=10).json()["key"]
    for path in ["/admin/overview", "/admin/models"]:
        assert _get(gw, path, viewer).status_code == 200
        refused = _get(gw, path, user)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "insufficient_role"
        assert requests.get(gw.base_url + path, timeout=10).status_code == 401


def test_models_lists_providers_and_directly_called_deployments(gw: RunningGateway) -> None:
    body = _get(gw, "/admin/models").json()
    assert body["routes"] == []  # no logical models configured
    assert {"name": "demo", "type": "demo", "source": "builtin", "models": []} in body["providers"]
    direct = {d["deployment"]: d for d in body["direct"]}
    demo = direct[MODEL]
    assert demo["breaker"]["state"] == "closed"
    assert demo["breaker"]["window_calls"] == CALLS
    assert demo["latency_ms"]["total"] > 0
    assert demo["in_flight"] == 0


def test_ui_files_are_not_counted_as_requests(gw: RunningGateway) -> None:
    before = _get(gw, "/admin/overview?days=1").json()["latency"]["count"]
    for _ in range(3):
        requests.get(gw.base_url + "/ui", timeout=10)
    assert _get(gw, "/admin/overview?days=1").json()["latency"]["count"] == before


def test_overview_without_metrics_has_no_latency() -> None:
    with run_gateway("metrics:\n  enabled: false\n", {}) as running:
        body = _get(running, "/admin/overview?days=2").json()
        assert body["latency"] is None
        assert [d["requests"] for d in body["days"]] == [0, 0]
        assert body["total"]["cost_usd"] == "0.000000000"


def test_quantiles_interpolate_within_a_bucket_like_histogram_quantile() -> None:
    cumulative = [(0.01, 10.0), (0.025, 10.0), (0.05, 20.0), (math.inf, 20.0)]
    assert quantile_ms(0.5, cumulative, 20) == 10.0  # the 10th of 20 calls: the top of the first bucket
    assert quantile_ms(0.95, cumulative, 20) == 47.5  # 9 of the 10 calls in (25 ms, 50 ms]
    # Calls slower than the last finite bound read as that bound (the open bucket has no upper edge).
    assert quantile_ms(0.5, [(0.01, 0.0), (math.inf, 5.0)], 5) == 10.0
    assert quantile_ms(0.5, [(0.01, 0.0), (math.inf, 0.0)], 0) is None
