"""A fake HashiCorp Vault speaking the HTTP API Tollgate uses: KV version 2 and Kubernetes auth.

No Vault binary can be installed from the registries this project's machines reach, so the secrets tests
run ``hvac`` (the real client) against this fake. It follows Vault's documented wire format:

    GET  /v1/<mount>/data/<path>         KV v2 read: {"data": {"data": {...}, "metadata": {"version": n, ...}}}
    POST /v1/<mount>/data/<path>         KV v2 write {"data": {...}}: a new version; answers its metadata
    POST /v1/auth/<mount>/login          Kubernetes auth {"role", "jwt"}: {"auth": {"client_token": ...}}

Errors are Vault's: ``{"errors": [...]}`` with 403 "permission denied" (missing, unknown or revoked
token, or a path outside the token's policy), 404 ``{"errors": []}`` for a secret that does not exist,
400 for an unknown Kubernetes role, 503 "Vault is sealed" while ``sealed``. ``X-Vault-Token`` carries
the token and ``X-Vault-Namespace`` the namespace (recorded: a fake set up with ``namespace`` refuses
requests for another one, as a namespaced token would).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PERMISSION_DENIED = {"errors": ["permission denied"]}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


@dataclass
class Version:
    data: dict[str, Any]
    created_time: str


@dataclass
class VaultState:
    mounts: set[str] = field(default_factory=lambda: {"secret"})
    kv: dict[tuple[str, str], list[Version]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)  # token -> path prefixes it may read
    roles: dict[str, tuple[str, set[str], tuple[str, ...]]] = field(default_factory=dict)  # role -> (mount, jwts, ...)
    namespace: str | None = None
    sealed: bool = False
    reads: int = 0
    logins: int = 0

    def put(self, mount: str, path: str, data: dict[str, Any]) -> int:
        versions = self.kv.setdefault((mount, path), [])
        versions.append(Version(dict(data), _now()))
        return len(versions)

    def add_token(self, token: str, *prefixes: str) -> None:
        """A token that may read ``<mount>/data/<path>`` under each prefix (all paths without prefixes)."""
        self.tokens[token] = prefixes or ("",)

    def add_role(self, role: str, jwt: str, *prefixes: str, auth_mount: str = "kubernetes") -> None:
        self.roles[role] = (auth_mount, {jwt}, prefixes or ("",))

    def revoke_all(self) -> None:
        """Every token stops working (what a token's TTL running out looks like to its holder)."""
        self.tokens.clear()


def _meta(version: Version, number: int) -> dict[str, Any]:
    return {
        "created_time": version.created_time,
        "custom_metadata": None,
        "deletion_time": "",
        "destroyed": False,
        "version": number,
    }


def _envelope(data: Any = None, auth: Any = None) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
        "mount_type": "kv" if auth is None else "",
    }


def make_app(state: VaultState | None = None) -> web.Application:
    state = state or VaultState()
    app = web.Application()

    def refuse(request: web.Request) -> web.Response | None:
        if state.sealed:
            return web.json_response({"errors": ["Vault is sealed"]}, status=503)
        if state.namespace is not None and request.headers.get("X-Vault-Namespace", "").strip("/") != state.namespace:
            return web.json_response(PERMISSION_DENIED, status=403)
        return None

    def allowed(request: web.Request, api_path: str) -> bool:
        prefixes = state.tokens.get(request.headers.get("X-Vault-Token", ""))
        return prefixes is not None and any(api_path.startswith(p) for p in prefixes)

    async def kv(request: web.Request) -> web.Response:
        refused = refuse(request)
        if refused is not None:
            return refused
        mount, path = request.match_info["mount"], request.match_info["path"]
        api_path = f"{mount}/data/{path}"
        if not allowed(request, api_path):
            return web.json_response(PERMISSION_DENIED, status=403)
        if mount not in state.mounts:
            return web.json_response(
                {"errors": [f'no handler for route "{api_path}". route entry not found.']}, status=404
            )
        if request.method == "POST":
            body = await request.json()
            number = state.put(mount, path, body["data"])
            version = state.kv[(mount, path)][-1]
            return web.json_response(_envelope(_meta(version, number)))
        state.reads += 1
        versions = state.kv.get((mount, path))
        if not versions:
            return web.json_response({"errors": []}, status=404)
        number = len(versions)
        version = versions[-1]
        return web.json_response(_envelope({"data": version.data, "metadata": _meta(version, number)}))

    async def login(request: web.Request) -> web.Response:
        refused = refuse(request)
        if refused is not None:
            return refused
        auth_mount = request.match_info["auth_mount"]
        body = await request.json()
        role = state.roles.get(str(body.get("role", "")))
        if role is None or role[0] != auth_mount:
            return web.json_response({"errors": [f'invalid role name "{body.get("role")}"']}, status=400)
        if body.get("jwt") not in role[1]:
            return web.json_response(PERMISSION_DENIED, status=403)
        token = "hvs." + secrets.token_urlsafe(18)
        state.tokens[token] = role[2]
        state.logins += 1
        return web.json_response(
            _envelope(
                auth={
                    "client_token": token,
                    "accessor": secrets.token_urlsafe(12),
                    "policies": ["default", "tollgate"],
                    "token_policies": ["default", "tollgate"],
                    "metadata": {"role": body["role"], "service_account_name": "tollgate"},
                    "lease_duration": 3600,
                    "renewable": True,
                    "entity_id": str(uuid.uuid4()),
                    "token_type": "service",
                    "orphan": True,
                    "mfa_requirement": None,
                    "num_uses": 0,
                }
            )
        )

    app.router.add_route("POST", "/v1/auth/{auth_mount}/login", login)
    app.router.add_route("GET", "/v1/{mount}/data/{path:.+}", kv)
    app.router.add_route("POST", "/v1/{mount}/data/{path:.+}", kv)
    return app
