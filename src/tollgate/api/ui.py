"""``GET /ui``: the admin web UI, static files shipped inside the package (``tollgate/ui``), served as they are.

No build step, no CDN: the page's script calls the admin API with the key its user signs in with. Only the
files present in the package are served (looked up by exact name, so no path can escape the folder), with a
strict Content-Security-Policy: the page loads nothing from anywhere but the gateway.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

from tollgate.api.http import Headers, Request, send_bytes
from tollgate.context import RequestContext
from tollgate.core.gateway import Gateway
from tollgate.errors import NotFoundError

PREFIX = "/ui/"
INDEX = "index.html"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SECURITY: Headers = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        b"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # Revalidated on every load (cheap: an ETag), so an upgraded gateway never serves a stale script.
    (b"cache-control", b"no-cache"),
]


class _Asset:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


_assets: dict[str, _Asset] | None = None


def assets() -> dict[str, _Asset]:
    """The UI's files by name, read once from the package."""
    global _assets
    if _assets is None:
        found: dict[str, _Asset] = {}
        for entry in files("tollgate.ui").iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if entry.is_file() and suffix in _TYPES:
                found[entry.name] = _Asset(entry.read_bytes(), _TYPES[suffix])
        _assets = found
    return _assets


async def _send(request: Request, ctx: RequestContext, name: str) -> None:
    asset = assets().get(name)
    if asset is None:
        raise NotFoundError(f"The admin UI has no file {name!r}. Open /ui to start.")
    headers: Headers = [
        (b"content-type", asset.content_type.encode()),
        (b"etag", asset.etag.encode()),
        *_SECURITY,
        *ctx.response_headers(),
    ]
    if request.header(b"if-none-match") == asset.etag:
        await send_bytes(request.send, 304, b"", headers)
        return
    await send_bytes(request.send, 200, asset.body, headers)


async def page(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _send(request, ctx, INDEX)


async def asset(gw: Gateway, request: Request, ctx: RequestContext) -> None:
    await _send(request, ctx, request.path[len(PREFIX) :])
