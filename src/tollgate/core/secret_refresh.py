"""Rotation without restart: re-read the config's secrets periodically and apply changed values at once.

``SecretRefresher`` (a gateway service) asks the ``SecretStore`` to read every ``${file:...}`` and
``${vault:...}`` secret the running config uses, every ``secrets.refresh_seconds``. When a value changed it
reloads the config through the ``Reloader``, so the new value reaches a new ``Snapshot`` swapped in one
assignment: requests and streams in flight finish with the adapters (and keys) they started with, the next
request uses the new key. Values a reload cannot apply (the master key, database and Redis URLs) are
reported by the reloader as needing a restart, as for any config change.

A secret that cannot be read (Vault sealed or unreachable, a file gone) keeps its last good value; the store
logs a warning naming the secret and the age of the value kept, and counts it (``SecretStore.failures``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tollgate.config.loader import ConfigError
from tollgate.core.reload import Reloader
from tollgate.secrets.store import SecretStore

log = logging.getLogger("tollgate.secrets")


class SecretRefresher:
    def __init__(self, store: SecretStore, reloader: Reloader, interval: float) -> None:
        self.store = store
        self.reloader = reloader
        self.interval = interval
        self.applied = 0  # reloads caused by a changed secret
        self._task: asyncio.Task[None] | None = None
        self._pending = False  # a changed secret not yet applied (its reload was refused): retried each round

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="secret-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh_once(self) -> bool:
        """One round: read the secrets again and apply any change; True when a new config was swapped in."""
        changed = await asyncio.to_thread(self.store.refresh)
        if changed:
            log.info("secrets changed: %s; reloading the config to apply them", ", ".join(map(str, changed)))
            self._pending = True
        if not self._pending:
            return False
        try:
            await self.reloader.reload()
        except ConfigError as exc:
            log.error("secrets changed but the config cannot be reloaded; the running config stays in force:\n%s", exc)
            return False
        self._pending = False
        self.applied += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh_once()
            except Exception:
                log.exception("secret refresh failed; the running config stays in force")
