"""The ``tollgate`` command: serve, check-config, keys, schema."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import orjson

from tollgate.config.loader import ConfigError, load_config_file
from tollgate.config.schema import TollgateConfig


def _load(path: str | None) -> TollgateConfig:
    if path is None:
        path = os.environ.get("TOLLGATE_CONFIG")
    return load_config_file(path) if path else TollgateConfig()


def cmd_serve(args: argparse.Namespace) -> int:
    from tollgate.api.app import create_app
    from tollgate.server import run

    config = _load(args.config)
    env = dict(os.environ)
    if args.host:
        env["TOLLGATE_HOST"] = args.host
    if args.port is not None:
        env["TOLLGATE_PORT"] = str(args.port)
    app, master_key, generated = create_app(config, env)
    run(app, master_key, generated)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from tollgate.core.snapshot import Snapshot

    config = load_config_file(args.file)
    snap = Snapshot(config)
    print(f"{args.file}: OK")
    print("  providers: " + ", ".join(f"{p.name} ({p.type}, {p.source})" for p in snap.providers.values()))
    print("  models:    " + (", ".join(config.models) or "none declared (provider/model and catalog names work)"))
    return 0


def _key_store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tollgate.config.settings import static_settings
    from tollgate.state.factory import open_key_store

    return open_key_store(static_settings(_load(args.config)).database_url)


def cmd_keys(args: argparse.Namespace) -> int:
    from tollgate.state.keys import new_key_record

    store = _key_store(args)

    async def go() -> int:
        try:
            if args.keys_cmd == "create":
                expires = time.time() + args.expires_in if args.expires_in else None
                models = tuple(m for m in (args.models or "").split(",") if m)
                key, record = new_key_record(
                    name=args.name,
                    user_id=args.user,
                    team_id=args.team,
                    role=args.role,
                    expires_at=expires,
                    allowed_models=models,
                )
                await store.put(record)
                print(f"Created key {record.id} ({record.name}). It is shown only this once:\n\n    {key}\n")
            elif args.keys_cmd == "list":
                records = await store.list()
                if args.json:
                    print(orjson.dumps([r.public() for r in records], option=orjson.OPT_INDENT_2).decode())
                else:
                    print(f"{'ID':<22} {'KEY':<14} {'NAME':<20} {'ROLE':<6} {'USER':<12} {'TEAM':<12} STATUS")
                    for r in records:
                        status = "revoked" if r.revoked_at else ("expired" if not r.is_active() else "active")
                        print(
                            f"{r.id:<22} {r.hint:<14} {r.name[:20]:<20} {r.role:<6} {(r.user_id or '-')[:12]:<12} "
                            f"{(r.team_id or '-')[:12]:<12} {status}"
                        )
            elif args.keys_cmd == "revoke":
                record = await store.revoke(args.id, time.time())
                if record is None:
                    print(f"No key with id {args.id}.", file=sys.stderr)
                    return 1
                print(f"Revoked {record.id} ({record.name}); running gateways stop accepting it within seconds.")
            return 0
        finally:
            await store.close()

    return asyncio.run(go())


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
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file without starting")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    keys = sub.add_parser("keys", help="manage virtual API keys")
    keys.add_argument("--config", "-c", help="config file naming the storage (default: zero-config)")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = ksub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--user", help="user id the key belongs to")
    create.add_argument("--team", help="team id the key belongs to")
    create.add_argument("--role", choices=("user", "admin"), default="user")
    create.add_argument("--models", help="comma-separated allow-list of models or patterns (gpt-4o*)")
    create.add_argument("--expires-in", type=int, help="seconds until the key expires")
    lst = ksub.add_parser("list", help="list keys (masked)")
    lst.add_argument("--json", action="store_true")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    keys.set_defaults(func=cmd_keys)

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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
