"""Secrets referenced by the config: files (Kubernetes secrets mounted as files) and HashiCorp Vault KV v2."""

from tollgate.secrets.store import REFERENCE, SecretError, SecretRef, SecretStore, parse_vault_target
from tollgate.secrets.vault import VaultError, VaultSettings

__all__ = [
    "REFERENCE",
    "SecretError",
    "SecretRef",
    "SecretStore",
    "VaultError",
    "VaultSettings",
    "parse_vault_target",
]
