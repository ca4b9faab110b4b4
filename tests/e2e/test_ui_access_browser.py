"""Who gets into the admin web UI, in Debian's headless Chromium: single sign-on through a fake OpenID provider,
and a team_admin key that sees its own team (and is told, not failed, where it cannot go).

The gateway runs with SSO on against tests/fakes/oidc_server.py (real HTTP on loopback); the browser clicks
"Sign in with …", goes through the provider's /authorize and comes back signed in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

from tests.e2e.test_ui_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, _need_browser, _screenshot
from tests.fakes.harness import free_port
from tests.fakes.oidc_server import CLIENT_ID, CLIENT_SECRET, FakeProvider, run_provider
from tests.gateway import RunningGateway, run_gateway

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - only without the dev extra
    sync_playwright = None

pytestmark = pytest.mark.slow

MODEL = "demo/tollgate-demo"
PER_REQUEST_USD = 0.25
PAYMENTS_CALLS = 3
RESEARCH_CALLS = 2


def _admin(gw: RunningGateway, path: str, body: dict[str, Any] | None = None) -> Any:
    if body is None:
        response = requests.get(gw.base_url + path, headers=gw.auth(), timeout=10)
    else:
        response = requests.post(gw.base_url + path, json=body, headers=gw.auth(), timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def _ask(gw: RunningGateway, key: str, text: str) -> None:
    client = openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeProvider]:
    with run_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
def gw(idp: FakeProvider) -> Iterator[RunningGateway]:
    _need_browser()
    port = free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port}/auth/sso/callback")
    config = f"""
pricing:
  models:
    {MODEL}: {{input: 0, output: 0, per_request: {PER_REQUEST_USD}}}
sso:
  enabled: true
  issuer: {idp.issuer}
  client_id: {CLIENT_ID}
  client_secret: ${{SSO_CLIENT_SECRET}}
  redirect_url: http://127.0.0.1:{port}/auth/sso/callback
  allowed_domains: [example.com]
  label: Example IdP
"""
    with run_gateway(config, {"SSO_CLIENT_SECRET": CLIENT_SECRET}, port=port) as running:
        _admin(running, "/admin/orgs", {"id": "acme", "name": "Acme"})
        for team in ("payments", "research"):
            _admin(running, "/admin/teams", {"id": team, "org_id": "acme", "name": team.title()})
        pay = _admin(running, "/admin/keys", {"name": "payments-svc", "team_id": "payments"})["key"]
        res = _admin(running, "/admin/keys", {"name": "research-bot", "team_id": "research"})["key"]
        for i in range(PAYMENTS_CALLS):
            _ask(running, pay, f"invoice {i}")
        for i in range(RESEARCH_CALLS):
            _ask(running, res, f"paper {i}")
        _wait_for_ledger(running, PAYMENTS_CALLS + RESEARCH_CALLS)
        yield running


def _wait_for_ledger(gw: RunningGateway, n: int) -> None:
    deadline = time.monotonic() + 10
    while _admin(gw, "/admin/overview?days=1")["total"]["requests"] < n:
        assert time.monotonic() < deadline, "the ledger did not record the test traffic"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser(gw: RunningGateway) -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, idp: FakeProvider) -> Iterator[Page]:
    idp.reset()
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield tab
    context.close()
    assert errors == [], f"the page reported errors: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tollgate-ui-access-shots")
    print(f"\nUI screenshots: {folder}")
    return folder


def _ready(page: Page, name: str) -> None:
    page.wait_for_selector(f'#page[data-page="{name}"][data-ready="true"]', timeout=10_000)


def _open(page: Page, name: str, link: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=link).click()
    _ready(page, name)


def test_sign_in_with_sso_through_the_provider_into_the_overview(page: Page, gw: RunningGateway, shots: Path) -> None:
    page.goto(gw.base_url + "/ui")
    button = page.get_by_role("link", name="Sign in with Example IdP")
    expect(button).to_be_visible()
    button.click()
    _ready(page, "overview")
    expect(page.locator("#whoami")).to_have_text("Signed in as alice@example.com · viewer")
    assert "sso=" not in page.url  # the session token is taken out of the address bar (and history)
    token = page.evaluate("sessionStorage.getItem('tollgate.adminKey')")
    assert token.startswith("tgs.") and token not in page.content()
    total = _admin(gw, "/admin/overview?days=14")["total"]
    expect(page.locator('[data-kpi="requests"] .value')).to_have_text(f"{total['requests']:,}")
    _screenshot(page, shots, "sso-overview")
    # A viewer session: every page opens, nothing is offered that it may not do.
    _open(page, "audit", "Audit log")
    expect(page.locator("tbody tr").filter(has_text="sso.sign_in").first).to_be_visible()
    # Sign-out ends the session at the gateway, not only in this tab.
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin-error")).to_have_text("Signed out.")
    refused = requests.get(gw.base_url + "/admin/session", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 401 and "signed out" in refused.json()["error"]["message"]


def test_an_address_outside_the_allowed_domains_is_told_why(
    page: Page, gw: RunningGateway, idp: FakeProvider, shots: Path
) -> None:
    idp.user = {**idp.user, "email": "mallory@evil.com"}
    page.goto(gw.base_url + "/ui")
    page.get_by_role("link", name="Sign in with Example IdP").click()
    alert = page.locator("#signin-error")
    expect(alert).to_contain_text("Single sign-on failed: mallory@evil.com may not sign in here")
    expect(alert).to_contain_text("only addresses at example.com may")
    expect(page.locator("#shell")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    assert "sso_error" not in page.url
    _screenshot(page, shots, "sso-refused")


def test_a_team_admin_sees_its_own_team(page: Page, gw: RunningGateway, shots: Path) -> None:
    lead = _admin(gw, "/admin/keys", {"name": "payments-lead", "team_id": "payments", "role": "team_admin"})["key"]
    page.goto(gw.base_url + "/ui")
    page.get_by_label("Admin key").fill(lead)
    page.get_by_role("button", name="Sign in").click()
    _ready(page, "spend")  # its landing page: the gateway-wide overview is not for it
    expect(page.locator("#whoami")).to_contain_text("team_admin of payments")

    # Spend: its team only, split by what splits a team.
    report = _admin(gw, "/admin/spend?by=user&team=payments")
    assert report["total"]["cost_usd"] == f"{PAYMENTS_CALLS * PER_REQUEST_USD:.9f}"
    expect(page.locator("tr.total td").last).to_have_attribute("title", f"${report['total']['cost_usd']}")
    options = page.get_by_label("Group by").locator("option").all_inner_texts()
    assert options == ["User", "Model", "Key", "Day"]
    expect(page.locator(".panel-head .muted").filter(has_text="team payments only")).to_be_visible()
    _screenshot(page, shots, "team-admin-spend")

    # Gateway-wide pages are shown disabled, and opening one explains instead of failing.
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Overview", "Models & routes", "Cache", "Audit log"):
        expect(nav.get_by_role("link", name=name)).to_have_attribute("aria-disabled", "true")
    overview = nav.get_by_role("link", name="Overview")
    why = (
        "Overview covers the whole gateway, so it needs an admin or viewer key. "
        "This team_admin key sees its own team (payments) on Spend, Keys, Teams and Guardrails."
    )
    expect(overview).to_have_attribute("title", why)
    page.evaluate("location.hash = '#/overview'")  # e.g. a bookmark: the page explains instead of failing
    _ready(page, "overview")
    expect(page.locator("#page")).to_contain_text("Not available with this key")
    expect(page.locator("#page .notice.bad")).to_have_count(0)

    # Keys: its team's, created in its team with the roles it may hand out.
    _open(page, "keys", "Keys")
    rows = page.locator("#key-list tbody tr")
    expect(rows).to_have_count(len(_admin(gw, "/admin/keys?team_id=payments")["data"]))
    expect(rows.filter(has_text="research-bot")).to_have_count(0)
    assert page.get_by_label("Team").locator("option").all_inner_texts() == ["Payments (payments)"]
    assert page.get_by_label("Role").locator("option").all_inner_texts() == ["user: call models", "team_admin"]
    page.get_by_label("Name").fill("payments-batch")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#secret-dialog")).to_be_visible()
    page.get_by_role("button", name="I have copied it").click()
    made = [k for k in _admin(gw, "/admin/keys")["data"] if k["name"] == "payments-batch"]
    assert len(made) == 1 and made[0]["team_id"] == "payments" and made[0]["role"] == "user"

    # Teams: its own, read only.
    _open(page, "teams", "Teams & budgets")
    expect(page.get_by_role("table", name="Teams").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Create team")).to_have_count(0)
    expect(page.locator("[data-read-only]")).to_contain_text("needs an admin key")

    # Guardrails: its team's events, the team filter fixed to it.
    _open(page, "guardrails", "Guardrails")
    expect(page.get_by_label("Team")).to_be_disabled()
    expect(page.get_by_label("Team")).to_have_value("payments")
    _screenshot(page, shots, "team-admin-guardrails")
