#!/usr/bin/env bash
# One-time setup for Tollgate's benchmark harness. Idempotent: skips what is already there.
#
#   bash benchmarks/setup.sh            # from the project root (or from anywhere)
#
# Installs:
#   1. wrk + a venv with uvloop/aiohttp/httpx/uvicorn/httptools (for the mock upstream, the load
#      generator and the floor proxies), via ../shared/bench/setup.sh           -> $BENCH_VENV
#      plus py-spy in that venv (for profiling; optional, failure is not fatal)
#   2. a separate venv with LiteLLM's proxy, the comparison baseline           -> $LITELLM_VENV
#   3. checks that the interpreter that runs Tollgate ($TOLLGATE_PYTHON) can import it
#
# Environment (all optional):
#   BENCH_VENV=/tmp/bench-venv  LITELLM_VENV=/tmp/litellm-venv
#   LITELLM_SPEC='litellm[proxy]'   (e.g. 'litellm[proxy]==1.106.2' to match the shared baseline doc)
#   TOLLGATE_PYTHON=python3         SKIP_LITELLM=1 (do not install LiteLLM)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$(cd "$ROOT/../shared/bench" 2>/dev/null && pwd || true)}"
BENCH_VENV="${BENCH_VENV:-/tmp/bench-venv}"
LITELLM_VENV="${LITELLM_VENV:-/tmp/litellm-venv}"
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"
TOLLGATE_PYTHON="${TOLLGATE_PYTHON:-python3}"

[ -n "$SHARED_BENCH" ] && [ -f "$SHARED_BENCH/setup.sh" ] || {
  echo "shared bench not found (expected $ROOT/../shared/bench; set SHARED_BENCH=...)" >&2; exit 2; }

# 1. wrk + bench venv (shared script); skip when everything it installs is already importable
if command -v wrk >/dev/null && [ -x "$BENCH_VENV/bin/python" ] \
   && "$BENCH_VENV/bin/python" -c 'import uvloop, aiohttp, httpx, uvicorn, httptools' 2>/dev/null; then
  echo "[setup] bench venv ok: $BENCH_VENV ($(wrk --version 2>&1 | head -1 | cut -c1-40))"
else
  echo "[setup] installing wrk + bench venv at $BENCH_VENV"
  bash "$SHARED_BENCH/setup.sh" "$BENCH_VENV"
fi
if [ -x "$BENCH_VENV/bin/py-spy" ]; then
  echo "[setup] py-spy ok: $BENCH_VENV/bin/py-spy"
else
  echo "[setup] installing py-spy into $BENCH_VENV (profiling only)"
  "$BENCH_VENV/bin/pip" install -q py-spy || echo "[setup] warning: py-spy install failed (profiling unavailable)" >&2
fi

# 2. LiteLLM venv
if [ "${SKIP_LITELLM:-0}" = "1" ]; then
  echo "[setup] SKIP_LITELLM=1: not installing LiteLLM"
elif [ -x "$LITELLM_VENV/bin/litellm" ] && "$LITELLM_VENV/bin/python" -c \
     'import importlib.metadata as m; [m.version(p) for p in ("litellm", "fastapi", "apscheduler", "uvicorn")]' 2>/dev/null; then
  echo "[setup] LiteLLM venv ok: $LITELLM_VENV (litellm $("$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))'))"
else
  echo "[setup] installing $LITELLM_SPEC into $LITELLM_VENV (takes a few minutes)"
  [ -x "$LITELLM_VENV/bin/python" ] || python3 -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install -q --upgrade pip
  "$LITELLM_VENV/bin/pip" install -q "$LITELLM_SPEC"
  LITELLM_LOCAL_MODEL_COST_MAP=True "$LITELLM_VENV/bin/python" -c 'import litellm.proxy.proxy_server' \
    || { echo "[setup] LiteLLM installed but its proxy does not import" >&2; exit 1; }
  echo "[setup] LiteLLM $("$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))') ready"
fi

# 3. Tollgate itself
if "$TOLLGATE_PYTHON" -c 'import tollgate, uvloop, httptools' 2>/dev/null; then
  echo "[setup] tollgate importable by $TOLLGATE_PYTHON ($("$TOLLGATE_PYTHON" -c 'import sys; print(sys.executable)'))"
else
  echo "[setup] installing Tollgate (editable) for $TOLLGATE_PYTHON"
  "$TOLLGATE_PYTHON" -m pip install -q -e "$ROOT"
fi
echo "[setup] done. Run: bash benchmarks/run.sh   (see benchmarks/README.md)"
