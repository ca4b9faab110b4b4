"""Single sign-on routes (``/auth/sso/...``) and the console's own session (``/admin/session``).

The browser leaves for the identity provider from ``/auth/sso/login`` and comes back to
``/auth/sso/callback``; the outcome goes to the UI in the URL fragment of a redirect to ``/ui`` (never sent
to a server, and the UI clears it at once): ``#sso=<session token>`` or ``#sso_error=<why>``. The flow's
secrets (state, nonce, PKCE verifier) ride in a signed, HttpOnly cookie scoped to ``/auth/sso``.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from tollgate.api.http import Headers, Request, send_bytes, send_json
from tollgate.context import Principal, RequestContext
from tollgate.core.auth import key_from_headers
from tollgate.core.gateway import Gateway
from tollgate.core.oidc import OidcError
from tollgate.core.sso import FLOW_COOKIE, FLOW_SECONDS, SingleSignOn
from tollgate.errors import InvalidRequestError, NotFoundError
from tollgate.types import JSONObject

log = logging.getLogger("tollgate.sso")

UI_PATH = "/ui"
COOKIE_PATH = "/auth/sso"


def _enabled(gw: Gateway) -> SingleSignOn:
    if gw.sso is None:
        raise NotFoundError("Single sign-on is not enabled on this gateway (sso.enabled in the config).")
    return gw.sso


def _cookie(sso: SingleSignOn, value: str, max_age: int) -> tuple[bytes, bytes]:
    # SameSite=Lax, not Strict: the provider sends the browser back with a cross-site top-level GET, on
    # which a Strict cookie would not be sent. The cookie only carries this flow's secrets, never a session.
    attrs = f"{FLOW_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    if sso.secure_cookie:
        attrs += "; Secure"
    return (b"set-cookie", attrs.encode("latin-1"))


async def _redirect(request: Request, ctx: RequestContext, location: str, extra: Headers) -> None:
    headers: Headers = [
        (b"location", location.encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        *extra,
        *ctx.response_headers(),
    ]
    await send_bytes(request.send, 303, b"", headers)


def _flow_cookie(request: Request) -> str | None:
    header = request.header(b"cookie") or ""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == FLOW_COOKIE and value:
            return value
    return None


async def info(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``GET /auth/sso``: whether the sign-in page offers single sign-on, and the button's label."""
    body: JSONObject = {"enabled": gw.sso is not None}
    if gw.sso is not None:
        body["label"] = gw.sso.config.label
        body["login_url"] = COOKIE_PATH + "/login"
    await send_json(request.send, 200, body, ctx.response_headers())


async def login(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``GET /auth/sso/login``: off to the identity provider, with a fresh state, nonce and PKCE verifier."""
    sso = _enabled(gw)
    try:
        url, cookie = await sso.begin()
    except OidcError as exc:
        log.warning("SSO sign-in could not start: %s", exc.message)
        await _redirect(request, ctx, f"{UI_PATH}#sso_error={quote(exc.message)}", [])
        return
    await _redirect(request, ctx, url, [_cookie(sso, cookie, FLOW_SECONDS)])


async def callback(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``GET /auth/sso/callback``: the provider's answer; checked, then a console session for the UI."""
    sso = _enabled(gw)
    query = request.query
    forget = [_cookie(sso, "", 0)]  # one attempt per flow, whatever its outcome
    try:
        if query.get("error"):
            detail = query.get("error_description") or query["error"]
            raise OidcError("provider_refused", f"The identity provider did not sign you in: {detail}.")
        signed_in = await sso.finish(query.get("code"), query.get("state"), _flow_cookie(request), ctx.request_id)
    except OidcError as exc:
        log.warning("SSO sign-in refused (%s): %s", exc.reason, exc.message)
        await _redirect(request, ctx, f"{UI_PATH}#sso_error={quote(exc.message)}", forget)
        return
    except Exception:
        log.exception("SSO sign-in failed (request %s)", ctx.request_id)
        message = f"The gateway could not finish the sign-in (request id {ctx.request_id}); try again."
        await _redirect(request, ctx, f"{UI_PATH}#sso_error={quote(message)}", forget)
        return
    await _redirect(request, ctx, f"{UI_PATH}#sso={signed_in.token}", forget)


def describe(principal: Principal) -> JSONObject:
    session = principal.metadata.get("sso_session")
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "role": principal.role,
        "team_id": principal.team_id,
        "org_id": principal.org_id,
        "session": (
            {"id": session, "email": principal.name, "expires_at": principal.metadata.get("sso_expires_at")}
            if isinstance(session, str)
            else None
        ),
    }


async def session(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``GET /admin/session``: who the bearer is (any key, or a console session), so the UI can fit itself."""
    principal = await gw.authenticate(ctx, request.headers)
    await send_json(request.send, 200, describe(principal), ctx.response_headers())


async def sign_out(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    """``DELETE /admin/session``: end a console session, on every replica."""
    principal = await gw.authenticate(ctx, request.headers)
    token = key_from_headers(request.headers) or ""
    current = gw.sso.session_of(token) if gw.sso is not None else None
    if current is None or principal.metadata.get("sso_session") != current.id:
        raise InvalidRequestError(
            "This bearer is an API key, not a console session: there is nothing to sign out of. "
            "To stop a key from working, revoke it (POST /admin/keys/{id}/revoke).",
            code="not_a_session",
        )
    assert gw.sso is not None
    await gw.sso.sign_out(current, ctx.request_id)
    await send_json(request.send, 200, {"signed_out": True, "session": current.id}, ctx.response_headers())
