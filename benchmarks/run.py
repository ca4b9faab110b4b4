#!/usr/bin/env python3
"""Tollgate's benchmark: the same overhead bench against the floor, Tollgate and LiteLLM, then one table.

Runs ../shared/bench/run_overhead.sh once per target, in this order, each with the same mock-upstream
settings and load:
  floor    : the trivial aiohttp pass-through (../shared/bench/floor/aiohttp_passthrough.py)
  tollgate : `python -m tollgate serve` zero-config (OPENAI_API_KEY + OPENAI_BASE_URL -> the mock)
  litellm  : LiteLLM proxy with ../shared/bench/examples/litellm_config.yaml (skipped if its venv is missing)
then prints ../shared/bench/summarize.py's side-by-side table and benchmarks/ratios.py's target table.

  bash benchmarks/run.sh                                   # full run (defaults below), ~20 min
  bash benchmarks/run.sh --duration 5 --repeats 1 --concurrency 1,64 --skip-litellm   # quick check

Outputs: bench_out/<run-id>/{floor,tollgate,litellm}/ (results.json, report.md, gateway.log, ...),
bench_out/<run-id>/summary.md (summarize.py), bench_out/<run-id>/ratios.md (ratios.py).
Arguments after `--` go to run_overhead.py unchanged (e.g. `-- --nice -10`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED_BENCH = os.environ.get("SHARED_BENCH") or os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))

MASTER_KEY = "sk-bench-1234"  # also the master_key in shared/bench/examples/litellm_config.yaml
MODEL = "gpt-4o-mini"
# provider variables Tollgate's zero-config would pick up: cleared so only the mock is configured
_CLEAR_ENV = (
    "TOLLGATE_CONFIG",
    "TOLLGATE_DATABASE_URL",
    "TOLLGATE_HOST",
    "TOLLGATE_PORT",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "OLLAMA_HOST",
)


def log(*a):
    print(f"[bench {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        s.close()


def find_tollgate_python(explicit: str | None) -> str:
    for cand in ([explicit] if explicit else []) + [os.environ.get("TOLLGATE_PYTHON"), "python3", sys.executable]:
        if not cand:
            continue
        try:
            out = subprocess.run(
                [cand, "-c", "import tollgate, sys; print(sys.executable)"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            return out.stdout.strip()
    sys.exit("no python can import tollgate: run `pip install -e .` (or set TOLLGATE_PYTHON)")


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except Exception:
        return "?"


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up seconds before each run (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="repeats per target (default 2)")
    ap.add_argument("--concurrency", default="1,16,64", help="comma list (default 1,16,64)")
    ap.add_argument("--modes", default="nonstream,stream", help="nonstream,stream (default both)")
    ap.add_argument("--mock-args", default="", help="extra mock_upstream.py args, e.g. '--delay-ms 20'")
    ap.add_argument("--targets", default="floor,tollgate,litellm", help="which to run (default all three)")
    ap.add_argument("--skip-litellm", action="store_true", help="do not run LiteLLM")
    ap.add_argument("--out", help="output folder (default bench_out/run-<time>/ in the project root)")
    ap.add_argument("--mock-port", type=int, default=18000)
    ap.add_argument("--floor-port", type=int, default=4100)
    ap.add_argument("--tollgate-port", type=int, default=4000)
    ap.add_argument("--litellm-port", type=int, default=4200)
    ap.add_argument(
        "--bench-python",
        default=os.environ.get("BENCH_PYTHON", "/tmp/bench-venv/bin/python"),
        help="venv python with uvloop+aiohttp (mock, loadgen, floor); default $BENCH_PYTHON or /tmp/bench-venv",
    )
    ap.add_argument("--tollgate-python", help="python that imports tollgate (default: $TOLLGATE_PYTHON, python3)")
    ap.add_argument("--litellm-venv", default=os.environ.get("LITELLM_VENV", "/tmp/litellm-venv"))
    args = ap.parse_args(argv)

    targets = [t for t in args.targets.split(",") if t]
    if args.skip_litellm and "litellm" in targets:
        targets.remove("litellm")
    for t in targets:
        if t not in ("floor", "tollgate", "litellm"):
            ap.error(f"unknown target {t!r}")
    if not os.path.isfile(os.path.join(SHARED_BENCH, "run_overhead.sh")):
        sys.exit(f"shared bench not found at {SHARED_BENCH} (set SHARED_BENCH)")
    if not os.access(args.bench_python, os.X_OK):
        sys.exit(f"{args.bench_python} not found: run `bash benchmarks/setup.sh` first")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: run `bash benchmarks/setup.sh` first")
    litellm_bin = os.path.join(args.litellm_venv, "bin", "litellm")
    if "litellm" in targets and not os.access(litellm_bin, os.X_OK):
        log(f"LiteLLM skipped: {litellm_bin} not found (bash benchmarks/setup.sh installs it)")
        targets.remove("litellm")

    if not targets:
        log("nothing to run")
        return 2
    run_id = "run-" + time.strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(args.out or os.path.join(ROOT, "bench_out", run_id))
    os.makedirs(out, exist_ok=True)
    tg_python = find_tollgate_python(args.tollgate_python) if "tollgate" in targets else None
    q = shlex.quote
    mock = args.mock_port

    common = [
        "--mock-port",
        str(mock),
        "--model",
        MODEL,
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--concurrency",
        args.concurrency,
        "--modes",
        args.modes,
        "--mock-args",
        args.mock_args,
    ]

    tmp_dirs: list[str] = []
    plans: list[tuple[str, int, list[str]]] = []
    for t in targets:
        if t == "floor":
            port = args.floor_port
            cmd = (
                f"exec {q(args.bench_python)} {q(os.path.join(SHARED_BENCH, 'floor', 'aiohttp_passthrough.py'))} "
                f"--port {port} --upstream http://127.0.0.1:{mock}"
            )
            plans.append((t, port, ["--gateway-cmd", cmd]))
        elif t == "tollgate":
            port = args.tollgate_port
            data_dir = tempfile.mkdtemp(prefix="tollgate-bench-")
            tmp_dirs.append(data_dir)
            unset = " ".join(f"-u {v}" for v in _CLEAR_ENV)
            cmd = (
                f"cd {q(data_dir)} && exec env {unset} OPENAI_API_KEY=sk-mock-upstream "
                f"OPENAI_BASE_URL=http://127.0.0.1:{mock}/v1 TOLLGATE_MASTER_KEY={MASTER_KEY} "
                f"TOLLGATE_DATA_DIR={q(data_dir)} TOLLGATE_LOG_LEVEL=warning "
                f"{q(tg_python)} -m tollgate serve --port {port}"
            )
            plans.append((t, port, ["--gateway-cmd", cmd, "--auth", f"Bearer {MASTER_KEY}"]))
        else:
            port = args.litellm_port
            cfg_src = os.path.join(SHARED_BENCH, "examples", "litellm_config.yaml")
            cfg = os.path.join(out, "litellm_config.yaml")  # a copy pointed at this run's mock port
            with open(cfg_src) as f:
                text = f.read().replace("127.0.0.1:18000", f"127.0.0.1:{mock}")
            with open(cfg, "w") as f:
                f.write(text)
            env_sh = os.path.join(SHARED_BENCH, "examples", "litellm_env.sh")
            cmd = (
                f". {q(env_sh)} && exec {q(litellm_bin)} --config {q(cfg)} --host 127.0.0.1 "
                f"--port {port} --num_workers 1"
            )
            plans.append((t, port, ["--gateway-cmd", cmd, "--auth", f"Bearer {MASTER_KEY}"]))

    env = dict(os.environ, BENCH_PYTHON=args.bench_python)
    log(f"output: {out}; targets: {', '.join(targets)}; tollgate python: {tg_python}; tollgate rev {git_rev()}")
    with open(os.path.join(out, "run.txt"), "w") as f:
        f.write(
            f"started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\ncommand: {' '.join(map(q, sys.argv))}\n"
            f"tollgate rev: {git_rev()}\ntargets: {targets}\n"
        )
    failed: list[str] = []
    done: list[str] = []
    try:
        for name, port, specific in plans:
            busy = [p for p in (mock, port) if not port_free(p)]
            if busy:
                log(
                    f"{name}: port(s) {busy} already in use on 127.0.0.1; skipped (stop that process or pick "
                    f"other ports with --mock-port/--{name}-port)"
                )
                failed.append(name)
                continue
            cmd = [
                "bash",
                os.path.join(SHARED_BENCH, "run_overhead.sh"),
                "--label",
                name,
                "--gateway-url",
                f"http://127.0.0.1:{port}",
                "--out",
                os.path.join(out, name),
                *common,
                *specific,
                *extra,
            ]
            log(f"=== {name}: " + " ".join(map(q, cmd)))
            # the driver's own tables go to stderr (also saved as <out>/<name>/report.md); stdout stays the summary
            rc = subprocess.call(cmd, env=env, cwd=ROOT, stdout=sys.stderr)
            if rc == 0 and os.path.isfile(os.path.join(out, name, "results.json")):
                done.append(name)
                log(f"=== {name}: ok")
            else:
                failed.append(name)
                log(f"=== {name}: FAILED rc={rc}; see {out}/{name}/gateway.log and the messages above")
                if os.path.isfile(os.path.join(out, name, "results.json")):
                    done.append(name)  # partial results are still shown
            time.sleep(1.0)  # let the ports be released
    except KeyboardInterrupt:
        log("interrupted")
        failed.append("interrupted")
    finally:
        for d in tmp_dirs:
            shutil.rmtree(d, ignore_errors=True)

    results = [os.path.join(out, n, "results.json") for n in done]
    if results:
        summ = subprocess.run(
            [args.bench_python, os.path.join(SHARED_BENCH, "summarize.py"), *results], capture_output=True, text=True
        )
        rat = subprocess.run(
            [sys.executable, os.path.join(HERE, "ratios.py"), *results], capture_output=True, text=True
        )
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(summ.stdout)
        with open(os.path.join(out, "ratios.md"), "w") as f:
            f.write(rat.stdout)
        print(f"\n## Side by side ({', '.join(done)})")
        print(summ.stdout + summ.stderr)
        print("## Targets\n")
        print(rat.stdout + rat.stderr)
    log(f"done: {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
