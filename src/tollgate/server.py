"""Run the app on uvicorn (uvloop + httptools): the start-up banner, graceful shutdown, and N worker processes.

Shutdown (``SIGTERM`` or ``SIGINT``), in this order:

1. the gateway drains: ``/health/ready`` answers 503 ``draining``; for ``server.shutdown_drain_seconds``
   requests are still served, so load balancers that poll readiness stop sending first;
2. the listener closes (new connections are refused) and idle keep-alive connections are closed;
   requests and streams in flight get ``server.shutdown_grace_seconds`` to finish, then are cut;
3. the lifespan shutdown stops the services: the ledger queue is written (or spooled), counters close;
4. the process exits 0.

Each further signal skips to the next step: during the drain window it closes the listener at once; after
that it stops waiting for requests in flight (the ledger is still flushed).

Workers (``tollgate serve --workers N``): this process binds the port, applies migrations, then starts N
``tollgate serve`` processes that accept on the inherited socket, each a full gateway sharing Redis (limits,
budgets, revocations, cache) and the database; Prometheus metrics go through one multiprocess folder, so
``/metrics`` on any worker adds up all of them. Dead workers are restarted; the supervisor forwards signals.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from tollgate.api.app import TollgateApp
from tollgate.config.schema import TollgateConfig
from tollgate.config.settings import StaticSettings
from tollgate.core.gateway import Gateway
from tollgate.core.snapshot import Snapshot
from tollgate.policies.ledger import SPOOL_FILE

log = logging.getLogger("tollgate")

# Set by the supervisor in each worker's environment (never by hand).
WORKER_FD_ENV = "TOLLGATE_WORKER_FD"
WORKER_READY_FD_ENV = "TOLLGATE_WORKER_READY_FD"
WORKER_INDEX_ENV = "TOLLGATE_WORKER_INDEX"
LEDGER_SPOOL_ENV = "TOLLGATE_LEDGER_SPOOL_FILE"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR = "prometheus-multiproc"
# Beyond drain + grace: time a worker gets to flush its ledger and close before it is killed.
FLUSH_MARGIN_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 60.0


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("tollgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def banner(settings: StaticSettings, snap: Snapshot, master_key: str, generated: bool, workers: int = 1) -> str:
    s = settings
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    url = f"http://{host}:{s.port}"
    lines = [
        f"Tollgate is listening on {url}" + (f" ({workers} workers)" if workers > 1 else ""),
        f"  OpenAI-compatible:    {url}/v1  (chat/completions, embeddings, models, completions)",
        f"  Anthropic-compatible: {url}  (POST /v1/messages)",
        f"  Simple API:           POST {url}/chat",
        f"  Storage:              {s.database_url}",
        "  Providers:            " + ", ".join(f"{p.name} ({p.type}, {p.source})" for p in snap.providers.values()),
        f"  Config version:       {snap.version}",
    ]
    if generated:
        lines += [
            "",
            "A master key was generated and saved (mode 600) to " + str(s.data_dir / "master.key") + ".",
            "It is shown this once; keep it safe:",
            "",
            f"    {master_key}",
            "",
        ]
    else:
        where = {
            "env": "TOLLGATE_MASTER_KEY",
            "config": "the config file",
            "file": str(s.data_dir / "master.key"),
        }
        lines.append(f"  Master key:           from {where[s.master_key_from]}")
    lines += [
        "Authenticate with 'Authorization: Bearer <key>' (or 'x-api-key: <key>'). Try:",
        f"  curl {url}/chat -H 'Authorization: Bearer $TOLLGATE_KEY' -d '{{\"prompt\": \"hello\"}}'",
    ]
    return "\n".join(lines)


# Young-generation collections every 10,000 net container allocations instead of CPython's 700.
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Garbage-collector settings for a serving process, applied once it has started.

    A request's objects are freed by reference counting as soon as it ends; the cycle collector finds
    almost nothing in a gateway, yet with CPython's defaults it ran ~15 times a second under 16 streams
    and took 9-11 % of the process's CPU (measured with gc.callbacks, docs/performance.md). Freezing
    what start-up built (modules, config, catalogs, compiled patterns: never garbage) takes it out of
    every later collection, and a higher young-generation threshold makes collections rare; cycles are
    still collected, only later.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class GracefulServer(uvicorn.Server):
    """uvicorn's server with the shutdown sequence of this module's docstring. The signal is not re-raised
    after a graceful stop (uvicorn's default), so a drained gateway exits 0."""

    def __init__(
        self, config: uvicorn.Config, gateway: Gateway, drain_seconds: float, parent_pid: int | None = None
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.drain_seconds = drain_seconds
        self.parent_pid = parent_pid  # a worker stops when its supervisor is gone
        self.signals = 0
        self._close_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.gateway.draining = True
        if self.signals == 1:
            log.warning(
                "%s: draining (readiness 503) for %.1f s, then in-flight requests get %.1f s",
                signal.Signals(sig).name,
                self.drain_seconds,
                self.config.timeout_graceful_shutdown or 0,
            )
            self._close_at = time.monotonic() + self.drain_seconds
            if self.drain_seconds <= 0:
                self.should_exit = True
        elif not self.should_exit:
            self.should_exit = True
        else:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._close_at is not None and not self.should_exit and time.monotonic() >= self._close_at:
            self.should_exit = True
        if self.parent_pid is not None and self.signals == 0 and os.getppid() != self.parent_pid:
            log.warning("the supervisor is gone: stopping")
            self.handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)


def run(
    app: TollgateApp,
    master_key: str,
    generated: bool,
    *,
    sockets: Sequence[socket.socket] | None = None,
    ready_fd: int | None = None,
    parent_pid: int | None = None,
) -> int:
    """Serve until stopped; returns the exit status (0 after a graceful stop, 1 when start-up failed)."""
    s = app.settings
    server_cfg = app.gateway.snapshot.config.server
    configure_logging(s.log_level)
    config = uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # uvicorn declares an int; it is used as a float timeout.
        timeout_graceful_shutdown=server_cfg.shutdown_grace_seconds,  # type: ignore[arg-type]
        server_header=False,
        date_header=False,
        # X-Forwarded-For is not trusted by default: a gateway must not let callers pick their address.
        proxy_headers=False,
    )
    server = GracefulServer(config, app.gateway, server_cfg.shutdown_drain_seconds, parent_pid)

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=list(sockets) if sockets else None))
        # The banner promises a working URL, so it is printed once the socket is listening.
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if server.started:
            tune_gc()
            if ready_fd is not None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)
            else:
                print(banner(s, app.gateway.snapshot, master_key, generated), file=sys.stderr, flush=True)
        await serving
        if app.started and not app.stopped:
            # A forced exit skips uvicorn's lifespan shutdown: queued ledger rows are flushed all the same.
            await app.gateway.stop()
            app.stopped = True

    try:
        import uvloop
    except ImportError:  # uvloop is not available on Windows
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0 if server.started else 1


def run_worker(app: TollgateApp, env: Mapping[str, str]) -> int:
    """One worker of ``serve --workers N``: accept on the supervisor's socket, report readiness on its pipe."""
    sock = socket.socket(fileno=int(env[WORKER_FD_ENV]))
    return run(
        app,
        "",
        False,
        sockets=[sock],
        ready_fd=int(env[WORKER_READY_FD_ENV]),
        parent_pid=os.getppid(),
    )


def workers_problem(config: TollgateConfig, settings: StaticSettings) -> str | None:
    """Why ``workers`` > 1 cannot run with this config (``None`` when it can)."""
    if not config.rate_limits.counter_url:
        return (
            "--workers > 1 needs Redis (rate_limits.counter_url): with in-process counters every worker would "
            "enforce its own rate limits and budgets (N times the limit) and would not hear key revocations "
            "made through another worker. Configure Redis, or run one worker per host (docs/operations.md)."
        )
    if settings.database_url.startswith("memory:"):
        return "--workers > 1 needs a shared database: memory:// gives every worker its own keys and ledger."
    return None


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready_read: int
    started_at: float
    ready: bool = False


@dataclass
class Supervisor:
    """Starts, watches and stops the worker processes of ``serve --workers N``."""

    argv: list[str]  # the ``tollgate serve`` command line a worker runs
    env: dict[str, str]
    workers: int
    sock: socket.socket
    metrics_dir: Path
    stop_timeout: float
    children: dict[int, _Worker] = field(default_factory=dict)
    signals: int = 0

    def spawn(self, index: int) -> _Worker:
        ready_read, ready_write = os.pipe()
        env = {
            **self.env,
            WORKER_FD_ENV: str(self.sock.fileno()),
            WORKER_READY_FD_ENV: str(ready_write),
            WORKER_INDEX_ENV: str(index),
            MULTIPROC_ENV: str(self.metrics_dir),
        }
        if index:
            # A spool file per worker, so replays never collide; worker 0 keeps the single process's file.
            env[LEDGER_SPOOL_ENV] = f"ledger-spool-w{index}.jsonl"
        # A session of its own: a terminal's Ctrl-C reaches the supervisor, which forwards it once.
        proc = subprocess.Popen(self.argv, env=env, pass_fds=(self.sock.fileno(), ready_write), start_new_session=True)
        os.close(ready_write)
        worker = _Worker(index, proc, ready_read, time.monotonic())
        self.children[index] = worker
        if self.signals:  # the stop signal came while it was being started: it gets it too
            proc.send_signal(signal.SIGTERM)
        return worker

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.children.values()):
            if self.signals or any(w.proc.poll() is not None for w in self.children.values()):
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pending = [w for w in self.children.values() if not w.ready]
            readable, _, _ = select.select([w.ready_read for w in pending], [], [], min(left, 0.2))
            for w in pending:
                if w.ready_read in readable and os.read(w.ready_read, 1):
                    w.ready = True
        return True

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        for w in self.children.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    def watch(self) -> None:
        """Until a signal: restart workers that die (their metrics files are marked dead first)."""
        from prometheus_client.multiprocess import mark_process_dead

        while not self.signals:
            time.sleep(0.2)
            self._note_ready()
            for index, w in list(self.children.items()):
                code = w.proc.poll()
                if code is None or self.signals:
                    continue
                mark_process_dead(w.proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
                os.close(w.ready_read)
                log.error("worker %d (pid %d) exited with status %s: restarting it", index, w.proc.pid, code)
                time.sleep(min(1.0, max(0.0, 1.0 - (time.monotonic() - w.started_at))))  # no tight crash loop
                self.spawn(index)

    def _note_ready(self) -> None:
        pending = [w for w in self.children.values() if not w.ready]
        if not pending:
            return
        readable, _, _ = select.select([w.ready_read for w in pending], [], [], 0)
        for w in pending:
            if w.ready_read in readable and os.read(w.ready_read, 1):
                w.ready = True
                log.warning("worker %d (pid %d) restarted and ready", w.index, w.proc.pid)

    def stop(self) -> int:
        """Workers were sent SIGTERM; close our copy of the listener, wait for them (bounded), kill leftovers."""
        self.sock.close()
        deadline = time.monotonic() + self.stop_timeout
        status = 0
        for w in self.children.values():
            try:
                code = w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop in time: killed", w.index, w.proc.pid)
                w.proc.kill()
                code = w.proc.wait()
            os.close(w.ready_read)
            # A worker still starting when the signal came had nothing in flight: its default exit is clean.
            clean = code == 0 or (code == -signal.SIGTERM and not w.ready)
            if not clean:
                log.error("worker %d (pid %d) exited with status %s", w.index, w.proc.pid, code)
            status = status or (0 if clean else 1)
        return status


def run_workers(
    config: TollgateConfig,
    settings: StaticSettings,
    argv: list[str],
    env: Mapping[str, str],
    workers: int,
    master_key: str,
    generated: bool,
) -> int:
    """Supervise ``workers`` worker processes on one listening socket; returns the exit status."""
    configure_logging(settings.log_level)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        print(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    sock.listen(2048)
    sock.set_inheritable(True)
    metrics_dir = Path(env.get(MULTIPROC_ENV) or settings.data_dir / METRICS_DIR)
    _clean_metrics_dir(metrics_dir)
    server_cfg = config.server
    supervisor = Supervisor(
        argv,
        {**env, "TOLLGATE_DATABASE_URL": settings.database_url},
        workers,
        sock,
        metrics_dir,
        server_cfg.shutdown_drain_seconds + server_cfg.shutdown_grace_seconds + FLUSH_MARGIN_SECONDS,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, supervisor.on_signal)
    for index in range(workers):
        if supervisor.signals:
            break
        supervisor.spawn(index)
    if supervisor.wait_ready(READY_TIMEOUT_SECONDS):
        print(banner(settings, Snapshot(config, env), master_key, generated, workers), file=sys.stderr, flush=True)
        supervisor.watch()
    elif not supervisor.signals:
        log.error("the workers did not all start; stopping")
        supervisor.on_signal(signal.SIGTERM, None)
        supervisor.stop()
        return 1
    return supervisor.stop()


_WORKER_SPOOL = re.compile(r"ledger-spool-w(\d+)\.jsonl(\.replaying|\.journal-\d+)?")


def adopt_worker_spools(data_dir: Path, workers: int) -> int:
    """Before any worker runs: move the spool files of workers that will not run now (index >= ``workers``)
    into worker 0's spool (the single process's file), so their rows are replayed; returns the files moved.
    Rows are appended (fsync'd) before a file is deleted; a crash in between only repeats rows, which the
    ledger writes once by id."""
    moved = 0
    for path in sorted(data_dir.glob("ledger-spool-w*.jsonl*")):
        match = _WORKER_SPOOL.fullmatch(path.name)
        if match is None or int(match.group(1)) < workers:
            continue
        data = path.read_bytes()
        if data.strip():
            fd = os.open(data_dir / SPOOL_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                # A leading newline: a torn last line of the target cannot swallow the first row moved.
                view = memoryview(b"\n" + data + (b"" if data.endswith(b"\n") else b"\n"))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        path.unlink()
        moved += 1
        log.warning("ledger spool %s of a worker that is not running now: moved to %s", path.name, SPOOL_FILE)
    return moved


def _clean_metrics_dir(folder: Path) -> None:
    """prometheus-client's multiprocess folder must hold no files of an earlier run (they would be summed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
