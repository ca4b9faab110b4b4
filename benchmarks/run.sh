#!/usr/bin/env bash
# Tollgate benchmark: floor vs Tollgate vs LiteLLM on ../shared/bench. All options: bash benchmarks/run.sh --help
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "$HERE/run.py" "$@"
