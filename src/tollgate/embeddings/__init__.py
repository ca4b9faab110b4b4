"""Sentence embeddings for the semantic cache: an offline all-MiniLM-L6-v2 encoder (onnxruntime, numpy fallback).

Nothing heavy is imported here: ``numpy``, ``tokenizers``, ``safetensors`` and ``onnxruntime`` load only when an
encoder is built (``load_encoder``), so a gateway without the semantic cache never pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import numpy.typing as npt

Runtime = Literal["auto", "onnxruntime", "numpy"]
DIMENSIONS = 384


class EmbeddingsUnavailable(RuntimeError):
    """The model package or a runtime dependency is missing; the message says what to install."""


class Encoder(Protocol):
    """Text to unit-length float32 vectors (cosine similarity is their dot product)."""

    name: str
    runtime: str
    max_tokens: int

    def token_count(self, text: str) -> int:
        """Word pieces of ``text``, [CLS] and [SEP] included (longer than ``max_tokens`` is truncated)."""
        ...

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One row per text, L2-normalised; texts longer than ``max_tokens`` are truncated."""
        ...


def load_encoder(runtime: Runtime = "auto", *, threads: int = 1, cache_dir: Path | None = None) -> Encoder:
    """The MiniLM encoder. ``auto``: onnxruntime when installed (graph built once into ``cache_dir``), else numpy."""
    from tollgate.embeddings.minilm import load_minilm

    return load_minilm(runtime, threads=threads, cache_dir=cache_dir)
