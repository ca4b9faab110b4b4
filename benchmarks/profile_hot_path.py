#!/usr/bin/env python3
"""Profile Tollgate's hot path: mock upstream + Tollgate + load, sampled with py-spy; top self-time functions.

  python3 benchmarks/profile_hot_path.py                         # non-streaming, c=16, 15 s
  python3 benchmarks/profile_hot_path.py --mode stream --concurrency 16 --duration 15

Starts the mock (CPU 1) and Tollgate zero-config (pinned to CPU 0), warms up, then runs py-spy
(CPU 1, `record -f raw`, Python frames only) on Tollgate while wrk (non-streaming) or loadgen.py
(streaming) drives load from CPU 1, stops everything it started, and prints:
  - where the samples' leaf frames are, by package (tollgate / aiohttp / uvicorn / asyncio / ...)
  - the top self-time functions inside src/tollgate (C calls such as orjson or hashlib are charged to
    the Python function that made them, since native frames are not sampled)
  - the top tollgate functions by inclusive time
Outputs (folded stacks, speedscope JSON, the tables) go to bench_out/profile-<time>/.
Needs py-spy (benchmarks/setup.sh installs it into /tmp/bench-venv) and ptrace rights (root).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED_BENCH = os.environ.get("SHARED_BENCH") or os.path.normpath(os.path.join(ROOT, "..", "shared", "bench"))
KEY = "sk-bench-1234"
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": "Explain in two sentences why a gateway in front of an LLM API "
            "should add as little latency as possible, and name one thing "
            "it must never drop from the response.",
        },
    ],
    "max_tokens": 64,
    "temperature": 0.2,
}
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def log(*a):
    print(f"[profile {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def post(port: int, body: bytes) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(
            "POST",
            "/v1/chat/completions",
            body=body,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def wait_ready(port: int, body: bytes, proc: subprocess.Popen, timeout: float = 60) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early (rc={proc.returncode})")
        try:
            if post(port, body) == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"port {port} not ready")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own group, started by us
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def parse_frame(fr: str) -> tuple[str, str]:
    m = FRAME.match(fr)
    if not m:
        return fr, ""
    return m.group("func"), m.group("file")


def is_tollgate(path: str) -> bool:
    # py-spy prints paths relative to sys.path entries ("tollgate/api/app.py") or absolute ones
    return path.startswith("tollgate/") or "/tollgate/" in path


# start-up frames under which the whole event loop runs (uvicorn.run): not request work
_ENTRY = ("tollgate/__main__.py", "tollgate/cli.py", "tollgate/server.py")


def is_request_code(path: str) -> bool:
    return is_tollgate(path) and not path.endswith(_ENTRY)


def package_of(path: str) -> str:
    if is_tollgate(path):
        return "tollgate"
    for pkg in (
        "aiohttp",
        "uvicorn",
        "asyncio",
        "httptools",
        "uvloop",
        "multidict",
        "yarl",
        "orjson",
        "logging",
        "concurrent",
        "selectors",
    ):
        if f"/{pkg}/" in path or path.endswith(f"/{pkg}.py") or path.startswith(f"{pkg}/"):
            return pkg
    return "other (" + os.path.basename(path) + ")" if path else "other"


def short(path: str) -> str:
    if path.startswith("tollgate/"):
        return "src/" + path
    i = path.find("/tollgate/")
    return "src" + path[i:] if i >= 0 else path


def analyse(folded: str, top: int) -> str:
    leaf_pkg: collections.Counter = collections.Counter()
    self_tg: collections.Counter = collections.Counter()
    self_tg_charged: collections.Counter = collections.Counter()
    incl_tg: collections.Counter = collections.Counter()
    total = 0
    with open(folded) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                n = int(n)
            except ValueError:
                continue
            frames = [parse_frame(x) for x in stack.split(";") if x]
            # py-spy raw: first entry is the thread/process label; drop entries that are not code frames
            frames = [fr for fr in frames if fr[1]]
            if not frames:
                continue
            total += n
            func, path = frames[-1]
            leaf_pkg[package_of(path)] += n
            if package_of(path) == "tollgate":
                self_tg[(func, short(path))] += n
            # deepest tollgate frame: time spent in libraries called *by* tollgate code (not by the server)
            for func2, path2 in reversed(frames):
                if is_request_code(path2):
                    self_tg_charged[(func2, short(path2))] += n
                    break
            seen = set()
            for func2, path2 in frames:
                if is_request_code(path2) and (func2, path2) not in seen:
                    seen.add((func2, path2))
                    incl_tg[(func2, short(path2))] += n
    out = [
        f"samples (non-idle): {total}\n",
        "#### leaf frame by package (self time)\n",
        "| package | samples | % |",
        "|---|---:|---:|",
    ]
    for pkg, n in leaf_pkg.most_common():
        out.append(f"| {pkg} | {n} | {100 * n / total:.1f} |")
    out += [
        "\n#### top self-time functions in src/tollgate (leaf frame in tollgate; C calls charged to the caller)\n",
        "| function | file | samples | % of all |",
        "|---|---|---:|---:|",
    ]
    for (func, path), n in self_tg.most_common(top):
        out.append(f"| {func} | {path} | {n} | {100 * n / total:.2f} |")
    out += [
        "\n#### deepest tollgate frame (self + libraries it calls: aiohttp client, orjson, hashlib, ...; "
        "samples outside any request handler, i.e. the server's own event-loop/protocol work, are not listed)\n",
        "| function | file | samples | % of all |",
        "|---|---|---:|---:|",
    ]
    for (func, path), n in self_tg_charged.most_common(top):
        out.append(f"| {func} | {path} | {n} | {100 * n / total:.2f} |")
    out += [
        "\n#### tollgate request code by inclusive time\n",
        "| function | file | samples | % of all |",
        "|---|---|---:|---:|",
    ]
    for (func, path), n in incl_tg.most_common(top):
        out.append(f"| {func} | {path} | {n} | {100 * n / total:.2f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("nonstream", "stream"), default="nonstream")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=int, default=15, help="seconds sampled")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    ap.add_argument("--mock-args", default="")
    ap.add_argument("--mock-port", type=int, default=18000)
    ap.add_argument("--port", type=int, default=4000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--bench-python", default=os.environ.get("BENCH_PYTHON", "/tmp/bench-venv/bin/python"))
    ap.add_argument("--tollgate-python", default=os.environ.get("TOLLGATE_PYTHON", "python3"))
    ap.add_argument("--py-spy", default=os.environ.get("PY_SPY", "/tmp/bench-venv/bin/py-spy"))
    ap.add_argument("--analyse", metavar="FOLDED", help="only analyse an existing py-spy raw file")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.analyse:
        print(analyse(a.analyse, a.top))
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(a.out or os.path.join(ROOT, "bench_out", f"profile-{a.mode}-{stamp}"))
    os.makedirs(out, exist_ok=True)
    body = dict(BODY, stream=True, stream_options={"include_usage": True}) if a.mode == "stream" else BODY
    body_b = json.dumps(body).encode()
    body_file = os.path.join(out, "body.json")
    with open(body_file, "wb") as f:
        f.write(body_b)
    data_dir = tempfile.mkdtemp(prefix="tollgate-prof-")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AZURE_OPENAI", "OLLAMA_"))
    }
    env.update(
        OPENAI_API_KEY="sk-mock-upstream",
        OPENAI_BASE_URL=f"http://127.0.0.1:{a.mock_port}/v1",
        TOLLGATE_MASTER_KEY=KEY,
        TOLLGATE_DATA_DIR=data_dir,
        TOLLGATE_LOG_LEVEL="warning",
    )
    with (
        open(os.path.join(out, "mock.log"), "wb") as mock_log,
        open(os.path.join(out, "gateway.log"), "wb") as gw_log,
    ):
        mock = gw = None
        try:
            mock_cmd = ["taskset", "-c", "1", a.bench_python, os.path.join(SHARED_BENCH, "mock_upstream.py")]
            mock = subprocess.Popen(
                [*mock_cmd, "--port", str(a.mock_port), *a.mock_args.split()],
                stdout=mock_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            gw_cmd = ["taskset", "-c", "0", a.tollgate_python, "-m", "tollgate", "serve", "--port", str(a.port)]
            gw = subprocess.Popen(
                gw_cmd, stdout=gw_log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=data_dir
            )
            wait_ready(a.port, body_b, gw)
            log(f"mock pid {mock.pid}, tollgate pid {gw.pid}; warm-up {a.warmup}s")
            url = f"http://127.0.0.1:{a.port}/v1/chat/completions"

            def load(seconds: int) -> subprocess.Popen:
                if a.mode == "nonstream":
                    lenv = dict(os.environ, BENCH_BODY_FILE=body_file, BENCH_HEADERS=f"Authorization: Bearer {KEY}")
                    cmd = [
                        "taskset",
                        "-c",
                        "1",
                        "wrk",
                        "-t1",
                        f"-c{a.concurrency}",
                        f"-d{seconds}s",
                        "-s",
                        os.path.join(SHARED_BENCH, "wrk_post.lua"),
                        url,
                    ]
                    return subprocess.Popen(cmd, env=lenv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                cmd = [
                    "taskset",
                    "-c",
                    "1",
                    a.bench_python,
                    os.path.join(SHARED_BENCH, "loadgen.py"),
                    "--url",
                    url,
                    "--body-file",
                    body_file,
                    "-H",
                    f"Authorization: Bearer {KEY}",
                    "-c",
                    str(a.concurrency),
                    "-d",
                    str(seconds),
                ]
                return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

            load(a.warmup).communicate(timeout=a.warmup + 60)
            folded = os.path.join(out, "tollgate.folded")
            lp = load(a.duration + 2)
            time.sleep(0.5)
            log(f"sampling {a.duration}s at {a.rate} Hz under {a.mode} load c={a.concurrency}")
            spy = subprocess.run(
                [
                    "taskset",
                    "-c",
                    "1",
                    a.py_spy,
                    "record",
                    "-p",
                    str(gw.pid),
                    "-d",
                    str(a.duration),
                    "-r",
                    str(a.rate),
                    "-f",
                    "raw",
                    "-o",
                    folded,
                    "--nonblocking",
                ],
                capture_output=True,
                text=True,
                timeout=a.duration + 60,
            )
            load_out, _ = lp.communicate(timeout=a.duration + 60)
            with open(os.path.join(out, "load.txt"), "w") as f:
                f.write(load_out)
            if spy.returncode != 0 or not os.path.exists(folded):
                log("py-spy failed:", spy.stdout[-500:], spy.stderr[-800:])
                return 1
            m = re.search(r"WRKJSON (\{.*\})", load_out)
            if m:
                d = json.loads(m.group(1))
                log(
                    f"load: {d['requests'] / (d['duration_us'] / 1e6):.0f} req/s (under sampling), "
                    f"errors status={d['err_status']}"
                )
            else:
                log("load:", load_out.strip().splitlines()[-1][:300] if load_out.strip() else "?")
        finally:
            stop(gw)
            stop(mock)
            shutil.rmtree(data_dir, ignore_errors=True)
    report = analyse(folded, a.top)
    with open(os.path.join(out, "profile.md"), "w") as f:
        f.write(report)
    print(report)
    log(f"outputs in {out} (tollgate.folded: py-spy raw/folded stacks; load with https://www.speedscope.app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
