#!/usr/bin/env python3
"""Tollgate's performance targets, computed from run_overhead.py results.json files, printed as markdown.

  python3 benchmarks/ratios.py bench_out/run-X/floor/results.json bench_out/run-X/tollgate/results.json \
      [bench_out/run-X/litellm/results.json]
  python3 benchmarks/ratios.py bench_out/run-X            # a run folder: picks up */results.json

Each file's role comes from its label (meta.label): 'floor', 'litellm', anything else = Tollgate; or
name them explicitly with --floor/--tollgate/--litellm. Repeats are averaged (the range is shown in the
results table). Prints two tables: the per-gateway results, and the targets with pass/fail.

Targets (DESIGN.md / docs/performance.md):
  throughput  Tollgate RPS / floor RPS, non-streaming, c=64          >= 0.6
  latency     Tollgate +p50 minus floor +p50, non-streaming, c=1      <= 0.3 ms
  stream CPU  Tollgate / floor CPU s per 1k streams (worst concurrency) <= 2x
  memory      Tollgate idle RSS (after start + one request of each kind) < 120 MB
  vs LiteLLM  Tollgate RPS / LiteLLM RPS, non-streaming c=64 (informational)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys

TARGET_RPS_RATIO = 0.6
TARGET_ADDED_P50_MS = 0.3
TARGET_STREAM_CPU_RATIO = 2.0
TARGET_IDLE_RSS_MB = 120.0


class Run:
    def __init__(self, path: str) -> None:
        with open(path) as f:
            d = json.load(f)
        self.path = path
        self.meta = d["meta"]
        self.label = self.meta.get("label", os.path.basename(os.path.dirname(path)))
        self.rows = [r for r in d["results"] if not r.get("discarded")]

    def _pairs(self, mode: str, c: int):
        """(gateway row, direct row or None) per repeat."""
        by = {(r["rep"], r["target"]): r for r in self.rows if r["mode"] == mode and r["concurrency"] == c}
        return [(g, by.get((rep, "direct"))) for (rep, t), g in sorted(by.items()) if t == "gateway"]

    def concurrencies(self, mode: str) -> list[int]:
        return sorted({r["concurrency"] for r in self.rows if r["mode"] == mode})

    def values(self, mode: str, c: int, what: str) -> list[float]:
        out = []
        for g, d in self._pairs(mode, c):
            if what == "rps":
                v = g["rps"]
            elif what == "cpu":
                v = g["gw_cpu_s_per_1k"]
            elif what == "foreign":
                v = g["foreign_util_pct"]
            elif what == "p50":
                v = g["lat_ms"]["p50"]
            elif what == "add_p50":
                v = (g["lat_ms"]["p50"] - d["lat_ms"]["p50"]) if d else None
            elif what == "add_ttfb":
                v = (g["ttfb_ms"]["p50"] - d["ttfb_ms"]["p50"]) if d and g.get("ttfb_ms") and d.get("ttfb_ms") else None
            elif what == "direct_rps":
                v = d["rps"] if d else None
            else:
                raise KeyError(what)
            if v is not None:
                out.append(float(v))
        return out

    def mean(self, mode: str, c: int, what: str) -> float | None:
        v = self.values(mode, c, what)
        return statistics.fmean(v) if v else None

    def idle_rss(self) -> float | None:
        m = self.meta.get("gw_mem_idle_mb")
        return float(m[0]) if m else None

    def end_rss(self) -> float | None:
        m = self.meta.get("gw_mem_end_mb")
        return float(m[0]) if m else None

    def max_foreign(self) -> float | None:
        """the worst foreign% over the gateway measurements (direct runs leave the gateway's core idle)"""
        v = [r["foreign_util_pct"] for r in self.rows if r["target"] == "gateway"]
        return max(v) if v else None


def f(v, nd=1, unit=""):
    return "-" if v is None else f"{v:.{nd}f}{unit}"


def fx(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}x"


def rng(vals, nd=0):
    """mean, and min-max when there are several repeats."""
    if not vals:
        return "-"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.{nd}f}"
    return f"{m:.{nd}f} ({min(vals):.{nd}f}-{max(vals):.{nd}f})"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def verdict(ok):
    return "-" if ok is None else ("✅ pass" if ok else "❌ miss")


def pick_c(run: Run | None, mode: str, want: int) -> int | None:
    if run is None:
        return None
    cs = run.concurrencies(mode)
    if not cs:
        return None
    return want if want in cs else (max(cs) if want > 1 else min(cs))


def results_table(runs: list[tuple[str, Run]]) -> list[str]:
    lo_c, hi_c = 1, 64
    out = [
        "| gateway | RPS c=1 | RPS c=64 | +p50 ms c=1 | CPU s/1k req c=1 | CPU s/1k req c=64 "
        "| stream RPS c=64 | stream +TTFB p50 ms c=1 | stream CPU s/1k c=1 | stream CPU s/1k c=64 "
        "| idle RSS MB | RSS end MB | max foreign% (gw runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _role, r in runs:
        n1, n64 = pick_c(r, "nonstream", lo_c), pick_c(r, "nonstream", hi_c)
        s1, s64 = pick_c(r, "stream", lo_c), pick_c(r, "stream", hi_c)

        def cell(mode, c, what, nd, r=r):
            return rng(r.values(mode, c, what), nd) if c is not None else "-"

        out.append(
            f"| {r.label} | {cell('nonstream', n1, 'rps', 0)} | {cell('nonstream', n64, 'rps', 0)} "
            f"| {cell('nonstream', n1, 'add_p50', 2)} | {cell('nonstream', n1, 'cpu', 3)} "
            f"| {cell('nonstream', n64, 'cpu', 3)} | {cell('stream', s64, 'rps', 0)} "
            f"| {cell('stream', s1, 'add_ttfb', 2)} | {cell('stream', s1, 'cpu', 3)} | {cell('stream', s64, 'cpu', 3)} "
            f"| {f(r.idle_rss(), 0)} | {f(r.end_rss(), 0)} | {f(r.max_foreign(), 0)} |"
        )
        if (n64 is not None and n64 != hi_c) or (n1 is not None and n1 != lo_c):
            out.append(
                f"|  ↳ {r.label}: measured concurrencies {r.concurrencies('nonstream')}; "
                f"columns use the nearest | | | | | | | | | | | | |"
            )
    return out


def targets_table(floor: Run | None, tg: Run | None, lite: Run | None) -> list[str]:
    out = ["| target | floor | Tollgate | LiteLLM | value | goal | |", "|---|---:|---:|---:|---:|---:|---|"]

    def get(run, mode, c, what):
        return run.mean(mode, c, what) if run is not None and c is not None else None

    # 1. throughput at c=64
    c = pick_c(tg, "nonstream", 64)
    fr, tr, lr = (get(x, "nonstream", c, "rps") for x in (floor, tg, lite))
    v = ratio(tr, fr)
    out.append(
        f"| RPS non-streaming c={c} (Tollgate / floor) | {f(fr, 0)} | {f(tr, 0)} | {f(lr, 0)} "
        f"| {f(v, 2)} | ≥ {TARGET_RPS_RATIO} | {verdict(None if v is None else v >= TARGET_RPS_RATIO)} |"
    )
    # 2. added p50 at c=1
    c1 = pick_c(tg, "nonstream", 1)
    fa, ta, la = (get(x, "nonstream", c1, "add_p50") for x in (floor, tg, lite))
    v = None if fa is None or ta is None else ta - fa
    out.append(
        f"| +p50 ms non-streaming c={c1} (Tollgate - floor) | {f(fa, 2)} | {f(ta, 2)} | {f(la, 2)} "
        f"| {f(v, 2)} ms | ≤ {TARGET_ADDED_P50_MS} ms "
        f"| {verdict(None if v is None else v <= TARGET_ADDED_P50_MS)} |"
    )
    # 3. streaming CPU per request, per concurrency; the headline is the worst one
    worst = None
    cs = sorted(set(tg.concurrencies("stream") if tg else []) & set(floor.concurrencies("stream") if floor else []))
    for cc in cs:
        fc, tc, lc = (get(x, "stream", cc, "cpu") for x in (floor, tg, lite))
        v = ratio(tc, fc)
        if v is not None and (worst is None or v > worst):
            worst = v
        out.append(
            f"| stream CPU s/1k req c={cc} (Tollgate / floor) | {f(fc, 3)} | {f(tc, 3)} | {f(lc, 3)} "
            f"| {fx(v, 2)} | ≤ {TARGET_STREAM_CPU_RATIO:g}x "
            f"| {verdict(None if v is None else v <= TARGET_STREAM_CPU_RATIO)} |"
        )
    if len(cs) > 1:
        out.append(
            f"| stream CPU, worst concurrency | | | | {fx(worst, 2)} | ≤ {TARGET_STREAM_CPU_RATIO:g}x "
            f"| {verdict(None if worst is None else worst <= TARGET_STREAM_CPU_RATIO)} |"
        )
    # non-streaming CPU, informational
    for cc in [1, 64] if tg else []:
        cc = pick_c(tg, "nonstream", cc)
        fc, tc, lc = (get(x, "nonstream", cc, "cpu") for x in (floor, tg, lite))
        out.append(
            f"| non-stream CPU s/1k req c={cc} (Tollgate / floor) | {f(fc, 3)} | {f(tc, 3)} | {f(lc, 3)} "
            f"| {fx(ratio(tc, fc), 2)} | (info) | |"
        )
    # 4. memory
    ri = tg.idle_rss() if tg else None
    out.append(
        f"| idle RSS MB | {f(floor.idle_rss() if floor else None, 0)} | {f(ri, 0)} "
        f"| {f(lite.idle_rss() if lite else None, 0)} | {f(ri, 0)} MB | < {TARGET_IDLE_RSS_MB:g} MB "
        f"| {verdict(None if ri is None else ri < TARGET_IDLE_RSS_MB)} |"
    )
    # 5. vs LiteLLM
    for mode in ("nonstream", "stream"):
        cc = pick_c(tg, mode, 64)
        tr, lr = get(tg, mode, cc, "rps"), get(lite, mode, cc, "rps")
        out.append(
            f"| RPS {mode} c={cc} (Tollgate / LiteLLM) | | {f(tr, 0)} | {f(lr, 0)} "
            f"| {fx(ratio(tr, lr), 1)} | (info) | |"
        )
    return [ln for ln in out if "c=None" not in ln]  # rows for a mode that was not measured


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="results.json files, or run folders holding */results.json")
    ap.add_argument("--floor")
    ap.add_argument("--tollgate")
    ap.add_argument("--litellm")
    ap.add_argument("--title", help="heading printed above the tables")
    a = ap.parse_args()
    files: list[str] = []
    for p in a.paths:
        files += sorted(glob.glob(os.path.join(p, "*", "results.json"))) if os.path.isdir(p) else [p]
    roles: dict[str, Run] = {}
    for p in files:
        r = Run(p)
        lab = r.label.lower()
        role = "floor" if "floor" in lab else "litellm" if "litellm" in lab else "tollgate"
        roles.setdefault(role, r)
    for role in ("floor", "tollgate", "litellm"):
        if getattr(a, role):
            roles[role] = Run(getattr(a, role))
    if not roles:
        ap.error("no results.json given")
    floor, tg, lite = roles.get("floor"), roles.get("tollgate"), roles.get("litellm")
    any_run = tg or floor or lite
    m = any_run.meta
    if a.title:
        print(f"### {a.title}\n")
    print(
        f"_Measured {m.get('started', '?')} on {m.get('nproc', '?')} vCPU ({m.get('host', '?')}), python "
        f"{m.get('python_version', '?')}, {m.get('wrk_version', 'wrk')}; {m.get('duration')} s per run after "
        f"{m.get('warmup')} s warm-up, {m.get('repeats')} repeat(s), concurrency {m.get('concurrency')}, "
        f"mock args '{m.get('mock_args', '')}'. Values are means over repeats (min-max in brackets)._\n"
    )
    print("#### Results\n")
    order = [(k, roles[k]) for k in ("floor", "tollgate", "litellm") if k in roles]
    print("\n".join(results_table(order)))
    print("\n#### Targets\n")
    print("\n".join(targets_table(floor, tg, lite)))
    noisy = [(k, r.max_foreign()) for k, r in order if (r.max_foreign() or 0) > 30]
    if noisy:
        print(
            "\n> ⚠ other processes used CPU during these runs (max foreign% "
            + ", ".join(f"{k} {v:.0f}%" for k, v in noisy)
            + "); treat the numbers as noisy."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
