"""Single sign-on for the admin UI, end to end: a real gateway, a fake OpenID provider on loopback, real HTTP.

Each sign-in walks the browser's path with plain HTTP (cookies kept, redirects followed one by one): the
gateway's /auth/sso/login, the provider's /authorize, back to /auth/sso/callback, which redirects to /ui
with the session token or the reason for a refusal in the fragment.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlencode, urlparse

import pytest
import requests

from tests.fakes.harness import free_port
from tests.fakes.oidc_server import CLIENT_ID, CLIENT_SECRET, FakeProvider, run_provider
from tests.gateway import RunningGateway, run_gateway


def _config(idp: FakeProvider, port: int, extra: str = "") -> str:
    return f"""
sso:
  enabled: true
  issuer: {idp.issuer}
  client_id: {CLIENT_ID}
  client_secret: ${{SSO_CLIENT_SECRET}}
  redirect_url: http://127.0.0.1:{port}/auth/sso/callback
  allowed_domains: [example.com, Example.org]
  admin_groups: [tollgate-admins]
  label: Example IdP
{extra}
"""


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeProvider]:
    with run_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
def gw(idp: FakeProvider) -> Iterator[RunningGateway]:
    port = free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port}/auth/sso/callback")
    with run_gateway(_config(idp, port), {"SSO_CLIENT_SECRET": CLIENT_SECRET}, port=port) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_provider(idp: FakeProvider) -> None:
    idp.reset()


def _walk(gw: RunningGateway, browser: requests.Session | None = None) -> str:
    """Follow a sign-in to its end; returns the fragment of the final redirect to /ui."""
    browser = browser or requests.Session()
    to_idp = browser.get(gw.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
    assert to_idp.status_code == 303, to_idp.text
    back = browser.get(to_idp.headers["location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302, back.text
    return _finish(browser, back.headers["location"])


def _finish(browser: requests.Session, callback_url: str) -> str:
    done = browser.get(callback_url, allow_redirects=False, timeout=10)
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith("/ui#"), location
    return location.split("#", 1)[1]


def _token(fragment: str) -> str:
    assert fragment.startswith("sso="), unquote(fragment)
    return fragment[len("sso=") :]


def _refusal(fragment: str) -> str:
    assert fragment.startswith("sso_error="), fragment
    message = unquote(fragment[len("sso_error=") :])
    assert "Traceback" not in message and "tgs." not in message
    return message


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _get(gw: RunningGateway, path: str, token: str) -> requests.Response:
    return requests.get(gw.base_url + path, headers=_bearer(token), timeout=10)


def _audit(gw: RunningGateway, action: str) -> list[dict[str, object]]:
    found = requests.get(gw.base_url + f"/admin/audit?action={action}", headers=gw.auth(), timeout=10)
    assert found.status_code == 200
    records: list[dict[str, object]] = found.json()["data"]
    return records


def test_the_sign_in_page_learns_that_sso_is_on(gw: RunningGateway) -> None:
    info = requests.get(gw.base_url + "/auth/sso", timeout=10).json()
    assert info == {"enabled": True, "label": "Example IdP", "login_url": "/auth/sso/login"}


def test_the_login_redirect_asks_for_a_code_with_pkce(gw: RunningGateway, idp: FakeProvider) -> None:
    to_idp = requests.get(gw.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
    url = urlparse(to_idp.headers["location"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == idp.issuer + "/authorize"
    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["scope"] == "openid email profile" and q["state"] and q["nonce"]
    cookie = to_idp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/auth/sso" in cookie
    assert q["state"] not in cookie  # signed and encoded, not readable as is by a page script anyway


def test_an_allowed_domain_gets_a_session_the_admin_api_accepts(gw: RunningGateway) -> None:
    token = _token(_walk(gw))
    who = _get(gw, "/admin/session", token)
    assert who.status_code == 200
    body = who.json()
    assert body["role"] == "viewer" and body["key_id"] == "sso:alice@example.com"
    assert body["session"]["email"] == "alice@example.com"
    assert body["session"]["expires_at"] > time.time() + 3600
    assert _get(gw, "/admin/keys", token).status_code == 200
    assert _get(gw, "/admin/overview?days=1", token).status_code == 200
    # A viewer session reads, and changes nothing.
    made = requests.post(gw.base_url + "/admin/orgs", json={"name": "Nope"}, headers=_bearer(token), timeout=10)
    assert made.status_code == 403 and made.json()["error"]["code"] == "insufficient_role"
    alice = {"key_id": "sso:alice@example.com", "role": "viewer"}
    signed_in = [r for r in _audit(gw, "sso.sign_in") if r["actor"] == alice]
    assert signed_in and signed_in[0]["target"]["type"] == "session"  # type: ignore[index]


def test_a_session_cannot_call_models(gw: RunningGateway) -> None:
    token = _token(_walk(gw))
    answer = requests.post(
        gw.base_url + "/v1/chat/completions",
        json={"model": "demo/tollgate-demo", "messages": [{"role": "user", "content": "hi"}]},
        headers=_bearer(token),
        timeout=10,
    )
    assert answer.status_code == 401
    assert "admin API only" in answer.json()["error"]["message"]


def test_an_admin_group_member_gets_the_admin_role(gw: RunningGateway, idp: FakeProvider) -> None:
    idp.user = {**idp.user, "sub": "u-9", "email": "Root@Example.org", "groups": ["staff", "tollgate-admins"]}
    token = _token(_walk(gw))
    assert _get(gw, "/admin/session", token).json()["role"] == "admin"
    made = requests.post(gw.base_url + "/admin/orgs", json={"name": "Made by SSO"}, headers=_bearer(token), timeout=10)
    assert made.status_code == 201, made.text
    creations = [r for r in _audit(gw, "org.create") if r["target"]["id"] == made.json()["id"]]  # type: ignore[index]
    assert creations[0]["actor"] == {"key_id": "sso:root@example.org", "role": "admin"}


def test_sign_out_ends_the_session(gw: RunningGateway) -> None:
    token = _token(_walk(gw))
    bye = requests.delete(gw.base_url + "/admin/session", headers=_bearer(token), timeout=10)
    assert bye.status_code == 200 and bye.json()["signed_out"] is True
    refused = _get(gw, "/admin/keys", token)
    assert refused.status_code == 401 and "signed out" in refused.json()["error"]["message"]
    assert any(r["target"]["id"] == bye.json()["session"] for r in _audit(gw, "sso.sign_out"))  # type: ignore[index]
    # An API key has no session to end.
    key = requests.delete(gw.base_url + "/admin/session", headers=gw.auth(), timeout=10)
    assert key.status_code == 400 and key.json()["error"]["code"] == "not_a_session"


@pytest.mark.parametrize(
    ("user", "tamper", "expected"),
    [
        ({"email": "mallory@evil.com"}, None, "only addresses at example.com, example.org may"),
        ({"email": "alice@sub.example.com"}, None, "only addresses at example.com"),
        ({"email_verified": False}, None, "has not verified the address alice@example.com"),
        ({"email": None}, None, "sent no email address"),
        ({}, "bad_signature", "signature does not match"),
        ({}, "wrong_audience", "issued for another application"),
        ({}, "wrong_issuer", "issued by another provider"),
        ({}, "expired", "has expired"),
        ({}, "wrong_nonce", "nonce mismatch"),
    ],
)
def test_refused_sign_ins_say_why(
    gw: RunningGateway, idp: FakeProvider, user: dict[str, object], tamper: str | None, expected: str
) -> None:
    idp.user = {k: v for k, v in {**idp.user, **user}.items() if v is not None}
    idp.tamper = tamper
    message = _refusal(_walk(gw))
    assert expected in message, message


def test_a_refused_domain_is_audited(gw: RunningGateway, idp: FakeProvider) -> None:
    idp.user = {**idp.user, "email": "eve@elsewhere.net"}
    _refusal(_walk(gw))
    refused = [r for r in _audit(gw, "sso.sign_in_refused") if r["actor"]["key_id"] == "sso:eve@elsewhere.net"]  # type: ignore[index]
    assert refused and refused[0]["after"]["reason"] == "domain_not_allowed"  # type: ignore[index]


def test_the_provider_saying_no_is_shown(gw: RunningGateway, idp: FakeProvider) -> None:
    idp.deny = True
    assert "did not sign you in: The user said no" in _refusal(_walk(gw))


def test_a_wrong_state_is_refused(gw: RunningGateway) -> None:
    browser = requests.Session()
    to_idp = browser.get(gw.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
    back = urlparse(browser.get(to_idp.headers["location"], allow_redirects=False, timeout=10).headers["location"])
    q = {k: v[0] for k, v in parse_qs(back.query).items()}
    forged = f"{back.scheme}://{back.netloc}{back.path}?" + urlencode({"code": q["code"], "state": "forged"})
    assert "state mismatch" in _refusal(_finish(browser, forged))


def test_a_callback_from_another_browser_is_refused(gw: RunningGateway) -> None:
    """Login CSRF: a code obtained in the attacker's browser cannot be completed in the victim's."""
    attacker = requests.Session()
    to_idp = attacker.get(gw.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
    callback = attacker.get(to_idp.headers["location"], allow_redirects=False, timeout=10).headers["location"]
    assert "not started in this browser" in _refusal(_finish(requests.Session(), callback))


def test_forged_and_altered_sessions_are_refused(gw: RunningGateway) -> None:
    token = _token(_walk(gw))
    body, mac = token[len("tgs.") :].split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    promoted = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for forged in (f"tgs.{promoted}.{mac}", "tgs.e30.AAAA", "tgs.", token[:-2]):
        refused = _get(gw, "/admin/session", forged)
        assert refused.status_code == 401, forged
        assert "not valid here" in refused.json()["error"]["message"]


def test_a_session_from_another_gateway_is_refused(idp: FakeProvider) -> None:
    """Sessions are signed with a key derived from the master key: another install's are not accepted."""
    port = free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port}/auth/sso/callback")
    env = {"SSO_CLIENT_SECRET": CLIENT_SECRET, "TOLLGATE_MASTER_KEY": "tg-master-other-0123456789"}
    with run_gateway(_config(idp, port), env, port=port) as other:
        token = _token(_walk(other))
        assert _get(other, "/admin/session", token).status_code == 200
    port2 = free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port2}/auth/sso/callback")
    with run_gateway(_config(idp, port2), {"SSO_CLIENT_SECRET": CLIENT_SECRET}, port=port2) as ours:
        assert _get(ours, "/admin/session", token).status_code == 401


def test_sign_out_reaches_every_replica(idp: FakeProvider, tmp_path: object) -> None:
    """Two replicas on one database: a session from one works on the other, and sign-out ends it on both."""
    ports = [free_port(), free_port()]
    for p in ports:
        idp.redirect_uris.append(f"http://127.0.0.1:{p}/auth/sso/callback")
    env = {"SSO_CLIENT_SECRET": CLIENT_SECRET, "TOLLGATE_DATA_DIR": str(tmp_path)}
    with (
        run_gateway(_config(idp, ports[0]), env, data_dir=str(tmp_path), port=ports[0]) as a,
        run_gateway(_config(idp, ports[1]), env, data_dir=str(tmp_path), port=ports[1]) as b,
    ):
        token = _token(_walk(a))
        assert _get(b, "/admin/keys", token).status_code == 200
        assert requests.delete(a.base_url + "/admin/session", headers=_bearer(token), timeout=10).ok
        assert _get(a, "/admin/keys", token).status_code == 401
        deadline = time.monotonic() + 15  # the other replica re-reads the audit log within seconds
        while _get(b, "/admin/keys", token).status_code != 401:
            assert time.monotonic() < deadline, "the other replica still accepts a signed-out session"
            time.sleep(0.2)


def test_an_unreachable_provider_is_a_clear_error(idp: FakeProvider) -> None:
    port, dead = free_port(), free_port()
    config = _config(idp, port).replace(idp.issuer, f"http://127.0.0.1:{dead}")
    with run_gateway(config, {"SSO_CLIENT_SECRET": CLIENT_SECRET}, port=port) as running:
        answer = requests.get(running.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
        assert answer.status_code == 303
        message = _refusal(answer.headers["location"].split("#", 1)[1])
        assert "discovery document" in message and "failed" in message


def test_sso_off_by_default() -> None:
    with run_gateway() as running:
        assert requests.get(running.base_url + "/auth/sso", timeout=10).json() == {"enabled": False}
        login = requests.get(running.base_url + "/auth/sso/login", allow_redirects=False, timeout=10)
        assert login.status_code == 404 and "not enabled" in login.json()["error"]["message"]
        # Without SSO a session-looking bearer is just an unknown key.
        assert _get(running, "/admin/session", "tgs.e30.AAAA").status_code == 401


@contextmanager
def _fresh_gateway(idp: FakeProvider, secret: str = CLIENT_SECRET) -> Iterator[RunningGateway]:
    """A gateway of its own, so it reads the provider's discovery document anew."""
    port = free_port()
    idp.redirect_uris.append(f"http://127.0.0.1:{port}/auth/sso/callback")
    with run_gateway(_config(idp, port), {"SSO_CLIENT_SECRET": secret}, port=port) as running:
        yield running


def test_a_provider_that_takes_the_secret_in_the_form_only(idp: FakeProvider) -> None:
    idp.auth_methods = ["client_secret_post"]
    with _fresh_gateway(idp) as running:
        token = _token(_walk(running))
        assert _get(running, "/admin/session", token).status_code == 200


def test_a_wrong_client_secret_is_reported(idp: FakeProvider) -> None:
    with _fresh_gateway(idp, secret="not-the-secret") as running:
        message = _refusal(_walk(running))
        assert message == "The identity provider did not accept the sign-in code: invalid_client.", message
        assert "not-the-secret" not in message
