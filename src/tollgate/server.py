"""Run the app on uvicorn (uvloop + httptools), with the start-up banner."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import uvicorn

from tollgate.api.app import TollgateApp


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("tollgate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def banner(app: TollgateApp, master_key: str, generated: bool) -> str:
    s = app.settings
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    url = f"http://{host}:{s.port}"
    snap = app.gateway.snapshot
    lines = [
        f"Tollgate is listening on {url}",
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


def run(app: TollgateApp, master_key: str, generated: bool) -> None:
    s = app.settings
    configure_logging(s.log_level)
    config = uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
        server_header=False,
        date_header=False,
        # X-Forwarded-For is not trusted by default: a gateway must not let callers pick their address.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        # The banner promises a working URL, so it is printed once the socket is listening.
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        if server.started:
            tune_gc()
            print(banner(app, master_key, generated), file=sys.stderr, flush=True)
        await serving

    try:
        import uvloop
    except ImportError:  # uvloop is not available on Windows
        asyncio.run(main())
    else:
        uvloop.run(main())
