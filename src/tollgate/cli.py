"""The ``tollgate`` command: serve, check-config, keys, orgs, teams, users, report, cache, migrate, prune, schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from tollgate.config.loader import ConfigError, load_config_file
from tollgate.config.schema import TollgateConfig
from tollgate.state.factory import Storage
from tollgate.state.migrations import SchemaBehindError
from tollgate.types import JSONObject, JSONValue


def _load(path: str | None) -> TollgateConfig:
    if path is None:
        path = os.environ.get("TOLLGATE_CONFIG")
    return load_config_file(path) if path else TollgateConfig()


def cmd_serve(args: argparse.Namespace) -> int:
    from tollgate.api.app import create_app
    from tollgate.config.settings import static_settings
    from tollgate.server import WORKER_FD_ENV, adopt_worker_spools, run, run_worker

    config = _load(args.config)
    env = dict(os.environ)
    if args.host:
        env["TOLLGATE_HOST"] = args.host
    if args.port is not None:
        env["TOLLGATE_PORT"] = str(args.port)
    config_path = args.config or env.get("TOLLGATE_CONFIG")  # for hot reload (POST /admin/reload)
    if WORKER_FD_ENV in env:  # one worker of `serve --workers N`, started by the supervisor
        app, _, _ = create_app(config, env, config_path=config_path)
        return run_worker(app, env)
    workers = args.workers if args.workers is not None else config.server.workers
    # Spools left by workers of an earlier `--workers M` run that will not run now are replayed by worker 0.
    adopt_worker_spools(static_settings(config, env).data_dir, workers)
    if workers > 1:
        return _serve_workers(args, config, env, workers)
    app, master_key, generated = create_app(config, env, config_path=config_path)
    return run(app, master_key, generated)


def _serve_workers(args: argparse.Namespace, config: TollgateConfig, env: dict[str, str], workers: int) -> int:
    from tollgate.config.settings import load_or_create_master_key, static_settings
    from tollgate.server import run_workers, workers_problem
    from tollgate.state.migrations import migrate_url

    settings = static_settings(config, env)
    problem = workers_problem(config, settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    master_key, generated = load_or_create_master_key(config, settings, env)  # before the workers look for it
    if config.storage.migrate_on_start:
        # Once, before the workers open the database.
        try:
            asyncio.run(migrate_url(settings.database_url))
        except OSError as exc:  # PostgreSQL down: the workers migrate when it answers (one at a time)
            print(f"warning: migrations not applied now ({exc}); the workers apply them later", file=sys.stderr)
    argv = [sys.executable, "-m", "tollgate", "serve"]
    if args.config:
        argv += ["--config", os.path.abspath(args.config)]
    return run_workers(config, settings, argv, env, workers, master_key, generated)


def cmd_migrate(args: argparse.Namespace) -> int:
    from tollgate.config.settings import static_settings
    from tollgate.state.migrations import migrate_url

    url = static_settings(_load(args.config)).database_url
    try:
        report = asyncio.run(migrate_url(url, dry_run=args.dry_run))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"error: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from tollgate.config.settings import static_settings
    from tollgate.state.retention import prune_url

    config = _load(args.config)
    retention = config.storage.retention
    ledger_days = args.ledger_days if args.ledger_days is not None else retention.ledger_days
    audit_days = args.audit_days if args.audit_days is not None else retention.audit_days
    url = static_settings(config).database_url
    try:
        report = asyncio.run(prune_url(url, ledger_days, audit_days, dry_run=args.dry_run))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"error: prune failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report.render())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from tollgate.core.snapshot import Snapshot

    config = load_config_file(args.file)
    if config.guardrails.pii.enabled and config.guardrails.pii.ner.enabled:
        from tollgate.guardrails.ner import check_installed

        check_installed(config.guardrails.pii.ner)  # the model is found, without loading it
    snap = Snapshot(config)
    print(f"{args.file}: OK")
    print("  providers: " + ", ".join(f"{p.name} ({p.type}, {p.source})" for p in snap.providers.values()))
    print("  models:    " + (", ".join(config.models) or "none declared (provider/model and catalog names work)"))
    return 0


def _storage(args: argparse.Namespace) -> Storage:
    from tollgate.config.settings import static_settings
    from tollgate.state.factory import open_storage

    config = _load(args.config)
    return open_storage(static_settings(config).database_url, migrate=config.storage.migrate_on_start)


def _governance_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every org, team, user and key accepts: allow-list, rate limits, budget, metadata."""
    parser.add_argument("--models", help="comma-separated allow-list of models or patterns (gpt-4o*)")
    for flag, what in (
        ("--rpm", "requests per minute"),
        ("--tpm", "tokens (input + output) per minute"),
        ("--input-tpm", "input tokens per minute"),
        ("--output-tpm", "output tokens per minute"),
        ("--max-parallel", "requests in flight at once"),
    ):
        parser.add_argument(flag, type=int, help=what)
    parser.add_argument("--budget-usd", type=float, help="USD budget per period")
    parser.add_argument("--budget-period", choices=("daily", "weekly", "monthly", "total"), default="monthly")
    parser.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="metadata (e.g. cost_center=42)")


def _governance_body(args: argparse.Namespace) -> JSONObject:
    body: JSONObject = {}
    if args.models:
        body["allowed_models"] = [m for m in args.models.split(",") if m]
    limits: JSONObject = {
        name: getattr(args, name)
        for name in ("rpm", "tpm", "input_tpm", "output_tpm", "max_parallel")
        if getattr(args, name) is not None
    }
    if limits:
        body["limits"] = limits
    if args.budget_usd is not None:
        body["budget"] = {"limit_usd": args.budget_usd, "period": args.budget_period}
    if args.metadata:
        body["metadata"] = {k: v for k, _, v in (item.partition("=") for item in args.metadata)}
    return body


def _admin(args: argparse.Namespace, operation: str, body: JSONObject, target: str | None = None) -> int:
    """Run one admin operation as the local operator (the same checks and audit record as the admin API)."""
    from tollgate.api import admin_keys, admin_tenants
    from tollgate.api.admin_access import Actor, AdminCall, AdminInput
    from tollgate.errors import TollgateError

    storage = _storage(args)
    module = admin_keys if operation.endswith(("_key", "_keys")) else admin_tenants
    query = {k: v for k, v in (("org_id", getattr(args, "org", None)), ("team_id", getattr(args, "team", None))) if v}

    run: Callable[[AdminCall, AdminInput], Awaitable[JSONObject]] = getattr(module, operation)

    async def go() -> int:
        # The operator at the console acts as an admin; the audit log names them as cli:<login>.
        call = AdminCall(storage, Actor(f"cli:{_login()}", "admin"))
        try:
            result = await run(call, AdminInput(target, body, query))
        except TollgateError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await storage.close()
        _print_result(args, operation, result)
        return 0

    return asyncio.run(go())


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers: still record that the CLI acted
        return "unknown"


def _print_result(args: argparse.Namespace, operation: str, result: JSONObject) -> None:
    if getattr(args, "json", False):
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    data = result.get("data")
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict):
                print(_row(item))
        return
    verb = operation.split("_", 1)[0]
    kind = str(result.get("object", "key"))
    print(f"{verb.capitalize()}d {kind} {result.get('id')} ({result.get('name')}).")
    if "key" in result:
        print(f"The key is shown only this once:\n\n    {result['key']}\n")
    elif verb == "revoke":
        print("Running gateways stop accepting it within seconds.")


def _row(item: JSONObject) -> str:
    if "key_hint" in item:
        status = "revoked" if item.get("revoked_at") else "active"
        expires = item.get("expires_at")
        if not item.get("revoked_at") and isinstance(expires, int | float) and expires <= time.time():
            status = "expired"
        cols: tuple[JSONValue, ...] = (
            item["id"],
            item["key_hint"],
            item["name"],
            item["role"],
            item["user_id"],
            item["team_id"],
            status,
        )
        widths: tuple[int, ...] = (22, 14, 20, 10, 14, 14, 0)
    else:
        parent = item.get("team_id") or item.get("org_id") or "-"
        cols = (item["id"], item["name"], item.get("role") or item.get("object"), parent, item.get("email") or "")
        widths = (22, 24, 12, 20, 0)
    return " ".join(f"{str(c if c is not None else '-')[: w or None]:<{w}}" for c, w in zip(cols, widths, strict=True))


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_cmd == "create":
        body: JSONObject = {"name": args.name, "role": args.role, **_governance_body(args)}
        for field, value in (("user_id", args.user), ("team_id", args.team), ("expires_in_seconds", args.expires_in)):
            if value is not None:
                body[field] = value
        return _admin(args, "create_key", body)
    if args.keys_cmd == "list":
        return _admin(args, "list_keys", {})
    return _admin(args, f"{args.keys_cmd}_key", {}, args.id)


def cmd_tenants(args: argparse.Namespace) -> int:
    kind = {"orgs": "org", "teams": "team", "users": "user"}[args.command]
    action = args.tenant_cmd
    if action == "list":
        return _admin(args, f"list_{kind}s", {})
    if action == "delete":
        return _admin(args, f"delete_{kind}", {}, args.id)
    body: JSONObject = _governance_body(args)
    for field, value in (
        ("id", args.id),
        ("name", args.name),
        ("org_id", getattr(args, "org", None)),
        ("team_id", getattr(args, "team", None)),
        ("email", getattr(args, "email", None)),
        ("role", getattr(args, "role", None)),
    ):
        if value is not None:
            body[field] = value
    return _admin(args, f"create_{kind}", body)


def cmd_report(args: argparse.Namespace) -> int:
    from tollgate.reports import ReportError, date_range, parse_by, parse_format, spend_report

    try:
        by = parse_by(args.by, args.team)
        since, until = date_range(args.since, args.until)
        fmt = parse_format(args.format)
        if args.verify and args.team:
            raise ReportError("--verify checks the whole ledger; run it without --team.")
    except ReportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    storage = _storage(args)

    async def go() -> int:
        try:
            report = await spend_report(storage.ledger, by, since, until, args.team)
            sys.stdout.write(report.render(fmt))
            if args.verify:
                # The aggregates against a full scan of the ledger rows: they must agree exactly.
                scan = await storage.ledger.scan_totals(since, until)
                total = report.total
                same = (scan.requests, scan.cost_nanos, scan.cost_saved_nanos) == (
                    total.requests,
                    total.cost_nanos,
                    total.cost_saved_nanos,
                )
                verdict = "OK" if same else "MISMATCH"
                print(
                    f"verify: ledger rows {scan.requests}, cost {scan.cost_nanos} nano-USD, saved by the cache "
                    f"{scan.cost_saved_nanos} nano-USD: {verdict}",
                    file=sys.stderr,
                )
                return 0 if same else 1
            return 0
        finally:
            await storage.close()

    return asyncio.run(go())


def cmd_cache(args: argparse.Namespace) -> int:
    """The cache lives in the running gateway: ask it through the admin API (``--url``, the master key)."""
    import urllib.error
    import urllib.request

    key = args.key or os.environ.get("TOLLGATE_MASTER_KEY", "")
    if args.cache_cmd == "warm":
        return _cache_warm(args, key)
    if args.cache_cmd == "stats":
        req = urllib.request.Request(args.url.rstrip("/") + "/admin/cache/stats", method="GET")
    else:
        body: JSONObject = {"all": True} if args.all else {}
        for name in ("model", "org", "team", "key_id"):
            value = getattr(args, name)
            if value:
                body["key" if name == "key_id" else name] = value
        req = urllib.request.Request(
            args.url.rstrip("/") + "/admin/cache/invalidate", data=orjson.dumps(body), method="POST"
        )
        req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        print(f"error: HTTP {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the gateway at {args.url}: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode())
    return 0


def _cache_warm(args: argparse.Namespace, key: str) -> int:
    """Send a file of prepared answers (JSON Lines, or one JSON list) to the gateway in batches."""
    import urllib.error
    import urllib.request

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        stripped = text.lstrip()
        if stripped.startswith("["):
            entries = orjson.loads(stripped)
        else:
            entries = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    except orjson.JSONDecodeError as exc:
        print(f"error: {args.file} is not JSON Lines or a JSON list: {exc}", file=sys.stderr)
        return 2
    scope: JSONObject = {name: getattr(args, name) for name in ("org", "team", "key_id") if getattr(args, name)}
    stored, skipped = 0, []
    for start in range(0, len(entries), args.batch):
        body = {"entries": entries[start : start + args.batch], **scope}
        req = urllib.request.Request(args.url.rstrip("/") + "/admin/cache/warm", data=orjson.dumps(body), method="POST")
        req.add_header("content-type", "application/json")
        req.add_header("authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                answer = orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            print(f"error: HTTP {exc.code} at entry {start}: {exc.read().decode(errors='replace')}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot reach the gateway at {args.url}: {exc}", file=sys.stderr)
            return 1
        stored += answer["stored"]
        skipped += [{**item, "index": item["index"] + start} for item in answer["skipped"]]
    print(orjson.dumps({"stored": stored, "skipped": skipped}, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(orjson.dumps(TollgateConfig.model_json_schema(), option=orjson.OPT_INDENT_2).decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tollgate", description="Tollgate AI gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", help="YAML config file (default: $TOLLGATE_CONFIG, else zero-config)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument(
        "--workers", type=int, choices=range(1, 65), metavar="N", help="worker processes on one port (needs Redis)"
    )
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    keys = sub.add_parser("keys", help="manage virtual API keys")
    keys.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = ksub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--user", help="user id the key belongs to (its team follows)")
    create.add_argument("--team", help="team id the key belongs to")
    create.add_argument("--role", choices=("user", "viewer", "team_admin", "admin"), default="user")
    create.add_argument("--expires-in", type=int, help="seconds until the key expires")
    _governance_flags(create)
    create.add_argument("--json", action="store_true")
    lst = ksub.add_parser("list", help="list keys (masked)")
    lst.add_argument("--team", help="only this team's keys")
    lst.add_argument("--json", action="store_true")
    for verb, text in (("revoke", "revoke a key by id"), ("rotate", "give a key a new secret (printed once)")):
        one = ksub.add_parser(verb, help=text)
        one.add_argument("id")
        one.add_argument("--json", action="store_true")
    keys.set_defaults(func=cmd_keys)

    for kind, parent in (("orgs", None), ("teams", "org"), ("users", "team")):
        tenants = sub.add_parser(kind, help=f"manage {kind}")
        tenants.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
        tsub = tenants.add_subparsers(dest="tenant_cmd", required=True)
        make = tsub.add_parser("create", help=f"create one of the {kind}")
        make.add_argument("--id", help="id to use (default: generated)")
        make.add_argument("--name", required=kind != "users")
        if parent:
            make.add_argument(f"--{parent}", required=True, help=f"the {parent} it belongs to")
        if kind == "users":
            make.add_argument("--email")
            make.add_argument("--role", choices=("user", "viewer", "team_admin", "admin"))
        _governance_flags(make)
        make.add_argument("--json", action="store_true")
        listing = tsub.add_parser("list", help=f"list {kind}")
        if parent:
            listing.add_argument(f"--{parent}", help=f"only this {parent}'s")
        listing.add_argument("--json", action="store_true")
        if kind == "teams":
            delete = tsub.add_parser("delete", help="delete a team: its keys stop working")
            delete.add_argument("id")
            delete.add_argument("--json", action="store_true")
        tenants.set_defaults(func=cmd_tenants)

    report = sub.add_parser("report", help="chargeback reports from the spend ledger")
    report.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
    rsub = report.add_subparsers(dest="report_cmd", required=True)
    spend = rsub.add_parser("spend", help="spend per user, team, org, model, key or day")
    # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
    spend.add_argument("--config", "-c", default=argparse.SUPPRESS, help="config file naming the storage")
    spend.add_argument("--by", default="user", choices=("user", "team", "org", "model", "key", "day"))
    spend.add_argument("--since", help="first UTC day, YYYY-MM-DD (default: the first of this month)")
    spend.add_argument("--until", help="last UTC day, included, YYYY-MM-DD (default: today)")
    spend.add_argument("--team", help="only this team's requests (by user, model, key or day)")
    spend.add_argument("--format", default="table", choices=("table", "csv", "json"))
    spend.add_argument("--verify", action="store_true", help="also check the totals against a full ledger scan")
    report.set_defaults(func=cmd_report)

    cache = sub.add_parser("cache", help="response cache stats and invalidation (asks the running gateway)")
    cache.add_argument("--url", default=os.environ.get("TOLLGATE_URL", "http://127.0.0.1:4000"), help="gateway URL")
    cache.add_argument("--key", help="an admin key (default: $TOLLGATE_MASTER_KEY)")
    csub = cache.add_subparsers(dest="cache_cmd", required=True)
    csub.add_parser("stats", help="hits, misses, tokens and dollars saved, entries")
    inv = csub.add_parser("invalidate", help="drop entries: --all, or one of --model, --org, --team, --key-id")
    inv.add_argument("--all", action="store_true")
    inv.add_argument("--model")
    inv.add_argument("--org")
    inv.add_argument("--team")
    inv.add_argument("--key-id", dest="key_id")
    warm = csub.add_parser("warm", help="store prepared answers from a JSON Lines file (docs/caching.md)")
    warm.add_argument("file", help="JSON Lines (or a JSON list) of {model, messages or prompt, answer, params}")
    warm.add_argument("--org", help="the org the entries belong to (cache.scope: org)")
    warm.add_argument("--team", help="the team the entries belong to (cache.scope: team)")
    warm.add_argument("--key-id", dest="key_id", help="the key the entries belong to (cache.scope: key)")
    warm.add_argument("--batch", type=int, default=1000, help="entries per request (default 1000)")
    cache.set_defaults(func=cmd_cache)

    migrate = sub.add_parser("migrate", help="apply pending database schema migrations (idempotent)")
    migrate.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
    migrate.add_argument("--dry-run", action="store_true", help="print what would be applied; change nothing")
    migrate.set_defaults(func=cmd_migrate)

    prune = sub.add_parser("prune", help="delete ledger rows and audit records older than storage.retention")
    prune.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
    prune.add_argument("--ledger-days", type=int, help="override storage.retention.ledger_days")
    prune.add_argument("--audit-days", type=int, help="override storage.retention.audit_days")
    prune.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    prune.set_defaults(func=cmd_prune)

    schema = sub.add_parser("schema", help="print the config file's JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SchemaBehindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
