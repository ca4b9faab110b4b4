"""Hot reload: re-read the config file and apply, without a restart, what can change while serving.

What changes at once (``RELOADABLE``): providers, logical models and their deployments, gateway-wide
settings, routing, prices and guardrails. The first five live in the config ``Snapshot`` (prices also in the
shared ``PriceBook``), so a reload builds a new snapshot and swaps it in one assignment: a request in flight
keeps the snapshot it started with, the next request gets the new one, and nothing is dropped. Guardrails are
policies built per profile into ``Pipelines`` (core/pipeline.py); a reload composes new ones and installs them
the same way (a request keeps the pipeline it was given at AUTHENTICATE; what a replaced guard holds open is
closed after a grace period). Every request records the version of the snapshot that served it
(``x-tollgate-config-version``, the ledger, metrics).

Everything else (server, storage, counters, budgets, cache, the guardrail audit, metrics) was built into
stateful parts at start (open connections, counters, queues); a change there is reported as
``restart_required`` and not applied, and the running gateway keeps the values it started with, so what
``/health/ready`` reports is what is in force. An invalid file is refused with the loader's located errors
and the old config keeps serving.

``ConfigWatcher`` (``server.watch_config``) polls the file and reloads when it changes, which is how every
replica of a Kubernetes deployment follows an updated ConfigMap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tollgate.config.loader import ConfigError, load_config_file
from tollgate.config.schema import TollgateConfig
from tollgate.core.gateway import Gateway
from tollgate.core.pipeline import Pipelines
from tollgate.core.snapshot import Snapshot
from tollgate.pricing import PriceBook
from tollgate.secrets.store import SecretStore
from tollgate.types import JSONObject, JSONValue

log = logging.getLogger("tollgate.reload")

RELOADABLE = ("providers", "models", "settings", "routing", "pricing", "guardrails")
# How long a replaced guard keeps what it holds open (a webhook's HTTP session) for requests still using it.
RETIRE_GRACE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class ReloadResult:
    version: str
    previous_version: str
    applied: list[str] = field(default_factory=list)  # reloadable sections that changed, now in force
    restart_required: list[str] = field(default_factory=list)  # sections that changed but wait for a restart

    def to_json(self) -> JSONObject:
        return {
            "object": "config.reload",
            "config_version": self.version,
            "previous_version": self.previous_version,
            "applied": list[JSONValue](self.applied),
            "restart_required": list[JSONValue](self.restart_required),
        }


class Reloader:
    """Reloads ``path`` into ``gateway`` (one reload at a time)."""

    def __init__(
        self,
        gateway: Gateway,
        path: str | Path,
        env: Mapping[str, str],
        prices: PriceBook,
        secrets: SecretStore | None = None,
    ) -> None:
        self.gateway = gateway
        self.secrets = secrets  # resolves ${file:...}/${vault:...} (Vault values from its cache)
        self.path = Path(path)
        self.env = env
        self.prices = prices
        self._lock = asyncio.Lock()
        self.reloads = 0  # successful reloads
        self.failures = 0  # files refused

    async def reload(self) -> ReloadResult:
        """Apply the file as it is now; raises ``ConfigError`` (old config kept) when it cannot be used."""
        async with self._lock:
            try:
                snapshot, merged, result, pipelines = await asyncio.to_thread(self._prepare)
            except ConfigError:
                self.failures += 1
                raise
            self.prices.reconfigure(merged.pricing)
            self.gateway.swap(snapshot)
            if pipelines is not None:
                self.gateway.install(pipelines, RETIRE_GRACE_SECONDS)
            await self.gateway.close_retired()
            self.reloads += 1
            log.info(
                "config reloaded from %s: version %s (was %s); applied: %s; restart required: %s",
                self.path,
                result.version,
                result.previous_version,
                ", ".join(result.applied) or "nothing changed",
                ", ".join(result.restart_required) or "none",
            )
            return result

    def _prepare(self) -> tuple[Snapshot, TollgateConfig, ReloadResult, Pipelines | None]:
        new = load_config_file(self.path, self.env, self.secrets)
        current = self.gateway.snapshot
        old = current.config
        before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
        applied: list[str] = []
        restart: list[str] = []
        keep: dict[str, object] = {}
        for name in TollgateConfig.model_fields:
            differs = before[name] != after[name]
            if name in RELOADABLE:
                if differs:
                    applied.append(name)
            else:
                keep[name] = getattr(old, name)
                if differs:
                    restart.append(name)
        if before["guardrails"]["audit"] != after["guardrails"]["audit"]:
            # The audit writer is one queue for the whole gateway, opened at start.
            restart.append("guardrails.audit")
            keep["guardrails"] = new.guardrails.model_copy(update={"audit": old.guardrails.audit})
            if before["guardrails"] == {**after["guardrails"], "audit": before["guardrails"]["audit"]}:
                applied.remove("guardrails")
        merged = new.model_copy(update=keep)
        pipelines: Pipelines | None = None
        try:
            snapshot = Snapshot(merged, self.env)
            if "guardrails" in applied and self.gateway.compose is not None:
                pipelines = self.gateway.compose(merged.guardrails)
        except (ValueError, KeyError) as exc:  # a combination the schema alone cannot rule out
            raise ConfigError(str(self.path), [str(exc)]) from None
        return snapshot, merged, ReloadResult(snapshot.version, current.version, applied, restart), pipelines


class ConfigWatcher:
    """A gateway service: reloads the config file when its content changes (polled every ``interval`` s).

    The file's content hash decides, not its time stamp, so a touched but unchanged file (or a ConfigMap
    update that rewrites the same bytes) causes no reload. A new content is applied once it has stayed the
    same for one more interval, so a file caught mid-write (truncated, then written) is not applied unless
    the writer stalls for a whole interval; files replaced in one step (rename) are always seen whole.
    A refused file is logged once per content."""

    def __init__(self, reloader: Reloader, interval: float) -> None:
        self.reloader = reloader
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._seen: str | None = None  # the content last applied (or refused)
        self._pending: str | None = None  # a new content, waiting to be seen unchanged once more

    def _digest(self) -> str | None:
        try:
            with open(self.reloader.path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None  # mid-replacement (or gone): try again at the next tick

    async def start(self) -> None:
        self._seen = await asyncio.to_thread(self._digest)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="config-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            digest = await asyncio.to_thread(self._digest)
            if digest is None or digest == self._seen:
                self._pending = None
                continue
            if digest != self._pending:
                self._pending = digest  # changed since the last look: apply it once it has settled
                continue
            self._seen, self._pending = digest, None
            try:
                await self.reloader.reload()
            except ConfigError as exc:
                log.error("config file changed but cannot be used; the running config stays in force:\n%s", exc)
            except Exception:
                log.exception("config reload failed; the running config stays in force")
