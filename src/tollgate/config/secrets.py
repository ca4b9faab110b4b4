"""Config of secret references (the ``secrets`` section): how often they are re-read, where Vault is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tollgate.secrets.vault import DEFAULT_JWT_PATH, VaultSettings


class VaultAuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["token", "kubernetes"] = Field(
        "token",
        description="token: the token in VAULT_TOKEN or token_file; kubernetes: log in with the pod's service "
        "account token (Vault's Kubernetes auth method).",
    )
    token_file: str | None = Field(
        None,
        description="Token auth: read the token from this file (e.g. a Vault Agent sink) instead of VAULT_TOKEN; "
        "re-read whenever Vault refuses the token.",
    )
    role: str | None = Field(None, description="Kubernetes auth: the Vault role to log in as.")
    jwt_path: str = Field(
        DEFAULT_JWT_PATH, description="Kubernetes auth: the service account token file sent to Vault."
    )
    mount: str = Field("kubernetes", description="Kubernetes auth: the path the auth method is mounted at.")


class VaultConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(None, description="Vault's URL, e.g. https://vault:8200 (default: env VAULT_ADDR).")
    namespace: str | None = Field(
        None, description="Vault Enterprise namespace (default: env VAULT_NAMESPACE; none: the root namespace)."
    )
    auth: VaultAuthConfig = Field(default_factory=VaultAuthConfig, description="How Tollgate logs in to Vault.")
    timeout_seconds: float = Field(5.0, gt=0, description="Seconds for one request to Vault.")
    verify_tls: bool = Field(True, description="Verify Vault's TLS certificate (turn off only for a local dev server).")
    ca_cert: str | None = Field(
        None,
        description="CA bundle file that signed Vault's certificate (default: env VAULT_CACERT; else the system's).",
    )


class SecretsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    refresh_seconds: float = Field(
        300.0,
        ge=0,
        description="Re-read every ${file:...} and ${vault:...} secret the config uses this often; a changed "
        "value is applied at once, like a config reload (0: read at start and at reloads only).",
    )
    vault: VaultConfig | None = Field(
        None, description="HashiCorp Vault (KV version 2) for ${vault:...} references; needs the 'vault' extra."
    )


def vault_settings(config: SecretsConfig, env: Mapping[str, str]) -> VaultSettings | None:
    """The Vault connection from the section and the standard VAULT_* variables (the section wins)."""
    vc = config.vault
    address = (vc.address if vc is not None else None) or env.get("VAULT_ADDR")
    if not address:
        return None
    vc = vc or VaultConfig()
    ca = vc.ca_cert or env.get("VAULT_CACERT")
    return VaultSettings(
        address=address,
        namespace=vc.namespace or env.get("VAULT_NAMESPACE") or None,
        auth_method=vc.auth.method,
        token=env.get("VAULT_TOKEN") or None,
        token_file=vc.auth.token_file,
        role=vc.auth.role,
        jwt_path=vc.auth.jwt_path,
        auth_mount=vc.auth.mount,
        timeout_seconds=vc.timeout_seconds,
        verify=False if not vc.verify_tls else (ca or True),
    )
