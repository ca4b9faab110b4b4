"""Secret references in the config (``${file:PATH}``, ``${vault:MOUNT/PATH#FIELD}``): resolved, cached, refreshed.

The config loader resolves every reference through one ``SecretStore`` per gateway. File secrets are read at
every load (a Kubernetes secret mounted as a file is swapped atomically, so a read never sees half a value);
Vault secrets are read once and then served from the cache, one read per KV path, until ``refresh`` reads
again every secret the running config uses. ``refresh`` keeps the last good value of a secret it cannot read
(and says so in the log), so a Vault outage after start never takes a working key away.

No value ever leaves this module except as the return value of ``resolve``: not in logs, errors or reprs.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tollgate.secrets.vault import KvSecret, VaultClient, VaultError, VaultSettings

log = logging.getLogger("tollgate.secrets")

# ${file:/var/run/secrets/openai/key}  ${vault:secret/data/tollgate/openai#api_key}
REFERENCE = re.compile(r"\$\{(file|vault):([^}]*)\}")


class SecretError(Exception):
    """A secret that cannot be resolved; the message names the reference, never a value."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    kind: Literal["file", "vault"]
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_vault_target(target: str) -> tuple[str, str, str]:
    """``MOUNT/data/PATH#FIELD`` (the API's form) or ``MOUNT/PATH#FIELD`` (the CLI's) -> (mount, path, field)."""
    location, sep, field = target.partition("#")
    location = location.strip().strip("/")
    if not sep or not field.strip():
        raise SecretError(f"vault:{target}: name the field to use after '#', e.g. secret/data/tollgate/openai#api_key")
    if "/data/" in location:
        mount, _, path = location.partition("/data/")
    else:
        mount, _, path = location.partition("/")
    if not mount or not path.strip("/"):
        raise SecretError(f"vault:{target}: expected MOUNT/data/PATH#FIELD, e.g. secret/data/tollgate/openai#api_key")
    return mount, path.strip("/"), field.strip()


@dataclass(slots=True)
class _Kv:
    secret: KvSecret
    fetched_at: float


class SecretStore:
    """Resolves and caches the secrets a config references. Thread-safe; blocking (Vault): call from a thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._vault_settings: VaultSettings | None = None
        self._vault: VaultClient | None = None
        self._kv: dict[tuple[str, str], _Kv] = {}
        self._files: dict[str, tuple[str, float]] = {}
        self.tracked: frozenset[SecretRef] = frozenset()  # the references of the config in force
        self.refreshes = 0  # refresh rounds
        self.failures = 0  # secrets a refresh could not read (the last good value was kept)
        self.rotations = 0  # secrets whose value a refresh found changed

    def configure_vault(self, settings: VaultSettings | None) -> None:
        """Set the Vault connection once (at the first load): changing it later needs a restart."""
        with self._lock:
            if self._vault_settings is None and settings is not None:
                self._vault_settings = settings

    def _client(self, ref: SecretRef) -> VaultClient:
        if self._vault is None:
            if self._vault_settings is None:
                raise SecretError(
                    f"{ref}: Vault is not configured: add a secrets.vault section (address, auth) or set VAULT_ADDR"
                )
            try:
                self._vault = VaultClient(self._vault_settings)
            except VaultError as exc:
                raise SecretError(f"{ref}: {exc}") from None
        return self._vault

    def resolve(self, ref: SecretRef) -> str:
        """The value of ``ref`` (files read now; Vault from the cache, read on first use)."""
        with self._lock:
            if ref.kind == "file":
                return self._read_file(ref)
            mount, path, field = parse_vault_target(ref.target)
            entry = self._kv.get((mount, path))
            if entry is None:
                entry = self._fetch(ref, mount, path)
            return self._field(ref, entry.secret, field)

    def track(self, refs: Iterable[SecretRef]) -> None:
        """The references of the config now in force: what ``refresh`` re-reads."""
        with self._lock:
            self.tracked = frozenset(refs)
            keep = {parse_vault_target(r.target)[:2] for r in self.tracked if r.kind == "vault"}
            self._kv = {k: v for k, v in self._kv.items() if k in keep}
            files = {r.target for r in self.tracked if r.kind == "file"}
            self._files = {k: v for k, v in self._files.items() if k in files}

    def refresh(self) -> list[SecretRef]:
        """Read every tracked secret again; the references whose value changed. A secret that cannot be
        read keeps its last good value (logged with its age)."""
        with self._lock:
            self.refreshes += 1
            changed: list[SecretRef] = []
            tracked = sorted(self.tracked, key=str)
            before = {ref: self._cached_or_none(ref) for ref in tracked}
            done: set[tuple[str, str]] = set()  # one read per KV path
            for ref in tracked:
                if ref.kind == "file":
                    try:
                        self._read_file(ref)
                    except SecretError as exc:
                        self._kept(ref, exc, self._files.get(ref.target, ("", self._clock()))[1])
                    continue
                mount, path, _ = parse_vault_target(ref.target)
                key = (mount, path)
                if key in done:
                    continue
                done.add(key)
                old = self._kv.get(key)
                try:
                    self._fetch(ref, mount, path)
                except SecretError as exc:
                    self._kept(ref, exc, old.fetched_at if old is not None else self._clock())
            for ref in tracked:
                try:
                    now = self._cached(ref)
                except SecretError as exc:  # e.g. the field was removed: keep the old value in force
                    self._kept(ref, exc, self._clock())
                    continue
                if now != before[ref]:
                    changed.append(ref)
            self.rotations += len(changed)
            return changed

    # -- internals ----------------------------------------------------------------------------------------

    def _kept(self, ref: SecretRef, exc: Exception, since: float) -> None:
        self.failures += 1
        log.warning(
            "secret %s could not be refreshed (%s); keeping the value read %.0f s ago", ref, exc, self._clock() - since
        )

    def _cached_or_none(self, ref: SecretRef) -> str | None:
        try:
            return self._cached(ref)
        except SecretError:  # a field a refresh found removed: reported when it was found
            return None

    def _cached(self, ref: SecretRef) -> str | None:
        if ref.kind == "file":
            got = self._files.get(ref.target)
            return None if got is None else got[0]
        mount, path, field = parse_vault_target(ref.target)
        entry = self._kv.get((mount, path))
        return None if entry is None else self._field(ref, entry.secret, field)

    def _read_file(self, ref: SecretRef) -> str:
        path = Path(ref.target.strip())
        if not ref.target.strip():
            raise SecretError("file: needs a path, e.g. ${file:/var/run/secrets/openai/api-key}")
        try:
            # A trailing newline (echo > file, most editors) is not part of the secret.
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{ref}: cannot read the file: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise SecretError(f"{ref}: the file is not UTF-8 text") from None
        self._files[ref.target] = (value, self._clock())
        return value

    def _fetch(self, ref: SecretRef, mount: str, path: str) -> _Kv:
        client = self._client(ref)
        try:
            secret = client.read(mount, path)
        except VaultError as exc:
            raise SecretError(f"{ref}: {exc}") from None
        entry = _Kv(secret, self._clock())
        self._kv[(mount, path)] = entry
        return entry

    @staticmethod
    def _field(ref: SecretRef, secret: KvSecret, field: str) -> str:
        if field not in secret.data:
            names = ", ".join(sorted(secret.data)) or "none"
            raise SecretError(f"{ref}: the secret (version {secret.version}) has no field {field!r} (fields: {names})")
        return secret.data[field]
