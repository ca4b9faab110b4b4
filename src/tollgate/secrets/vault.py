"""A HashiCorp Vault KV v2 reader over ``hvac`` (token or Kubernetes auth). Blocking: call it from a thread.

Error messages name the Vault address, the secret's path and what Vault answered; never a token, a JWT or
a secret's value.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class VaultError(Exception):
    """Vault could not give a secret; ``unreachable`` when it did not answer at all (or answered 5xx)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class VaultSettings:
    address: str
    namespace: str | None = None
    auth_method: Literal["token", "kubernetes"] = "token"
    token: str | None = None  # token auth: VAULT_TOKEN (read once at start)
    token_file: str | None = None  # token auth: re-read when Vault refuses the token (a Vault Agent sink)
    role: str | None = None  # kubernetes auth
    jwt_path: str = DEFAULT_JWT_PATH
    auth_mount: str = "kubernetes"
    timeout_seconds: float = 5.0
    verify: bool | str = True  # False, True, or a CA bundle path

    def __repr__(self) -> str:  # no token in any repr
        return f"VaultSettings(address={self.address!r}, auth_method={self.auth_method!r})"


@dataclass(frozen=True, slots=True)
class KvSecret:
    data: dict[str, str]
    version: int


def _reason(exc: BaseException) -> str:
    """What Vault said, without hvac's trailing URL (we name the path ourselves)."""
    text = str(exc).split(", on get ")[0].split(", on post ")[0].strip()
    if text.startswith("{"):  # some answers come back as the raw {"errors": [...]} body
        try:
            errors = json.loads(text).get("errors")
        except (ValueError, AttributeError):
            errors = None
        if isinstance(errors, list):
            text = "; ".join(str(e) for e in errors)
    return text or type(exc).__name__


class VaultClient:
    """Reads KV v2 secrets; logs in (again) on demand. Thread-safe."""

    def __init__(self, settings: VaultSettings) -> None:
        try:
            import hvac
        except ImportError:
            raise VaultError("secrets in Vault need the hvac package: pip install 'tollgate[vault]'") from None
        self.settings = settings
        self._hvac = hvac
        self._lock = threading.Lock()
        self._client: Any = None
        self.logins = 0  # successful logins (Kubernetes auth) or token (re)loads

    def _new_client(self) -> Any:
        s = self.settings
        return self._hvac.Client(url=s.address, namespace=s.namespace, timeout=s.timeout_seconds, verify=s.verify)

    def _authenticate(self) -> Any:
        s = self.settings
        client = self._new_client()
        if s.auth_method == "kubernetes":
            if not s.role:
                raise VaultError("Vault Kubernetes auth needs secrets.vault.auth.role")
            try:
                jwt = Path(s.jwt_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise VaultError(
                    f"cannot read the service account token {s.jwt_path} for Vault Kubernetes auth: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from None
            try:
                client.auth.kubernetes.login(role=s.role, jwt=jwt, mount_point=s.auth_mount)
            except self._hvac.exceptions.VaultError as exc:
                raise VaultError(
                    f"Vault at {s.address} refused the Kubernetes login (role {s.role!r}, auth mount "
                    f"{s.auth_mount!r}): {_reason(exc)}",
                    unreachable=isinstance(exc, (self._hvac.exceptions.VaultDown, self._hvac.exceptions.BadGateway)),
                ) from None
            except OSError as exc:  # requests' connection errors are OSErrors
                raise VaultError(
                    f"Vault at {s.address} is unreachable: {type(exc).__name__}", unreachable=True
                ) from None
        else:
            token = s.token
            if s.token_file:
                try:
                    token = Path(s.token_file).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise VaultError(
                        f"cannot read the Vault token file {s.token_file}: {exc.strerror or type(exc).__name__}"
                    ) from None
            if not token:
                raise VaultError(
                    "no Vault token: set VAULT_TOKEN or secrets.vault.auth.token_file (or use Kubernetes auth)"
                )
            client.token = token
        self.logins += 1
        return client

    def read(self, mount: str, path: str) -> KvSecret:
        """The latest version of the KV v2 secret at ``mount``/``path``."""
        with self._lock:
            if self._client is None:
                self._client = self._authenticate()
            try:
                return self._read(self._client, mount, path)
            except self._hvac.exceptions.Forbidden:
                pass
            # The token may have expired or been rotated (Vault Agent, a new pod token): log in again, once.
            self._client = self._authenticate()
            try:
                return self._read(self._client, mount, path)
            except self._hvac.exceptions.Forbidden:
                raise VaultError(
                    f"Vault at {self.settings.address} refused {mount}/data/{path}: permission denied"
                ) from None

    def _read(self, client: Any, mount: str, path: str) -> KvSecret:
        where = f"{mount}/data/{path}"
        errors = self._hvac.exceptions
        try:
            answer = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except errors.Forbidden:
            raise
        except errors.InvalidPath as exc:
            said = _reason(exc)  # empty for a missing secret; "no handler for route ..." for a missing mount
            detail = f" ({said})" if said not in ("None", "InvalidPath") else ""
            raise VaultError(f"Vault at {self.settings.address} has no secret at {where}{detail}") from None
        except (errors.VaultDown, errors.BadGateway, errors.InternalServerError) as exc:
            raise VaultError(
                f"Vault at {self.settings.address} cannot serve {where}: {_reason(exc)}", unreachable=True
            ) from None
        except errors.VaultError as exc:
            raise VaultError(f"Vault at {self.settings.address} refused {where}: {_reason(exc)}") from None
        except OSError as exc:
            raise VaultError(
                f"Vault at {self.settings.address} is unreachable (reading {where}): {type(exc).__name__}",
                unreachable=True,
            ) from None
        try:
            body = answer["data"]
            data = body["data"]
            version = int(body["metadata"]["version"])
        except (KeyError, TypeError, ValueError):
            raise VaultError(
                f"Vault at {self.settings.address} answered {where} without KV v2 data (is {mount!r} a KV "
                "version 2 mount?)"
            ) from None
        if not isinstance(data, dict):
            raise VaultError(f"Vault at {self.settings.address}: the secret at {where} has no data")
        return KvSecret({str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}, version)
