"""What turns the semantic cache's messages into vectors: the offline MiniLM encoder, or a provider's embeddings model.

Every vector comes with its *space*: the model that made it and its dimension (``minilm.all-MiniLM-L6-v2.384``,
``openai.text-embedding-3-small.1536``). Vectors of two spaces are never compared: the semantic cache keeps one
index (and one Redis stream) per space. For a provider the space is the deployment that actually answered, so a
fallback to another embeddings model, or a config reload that points the alias elsewhere, starts a fresh index
rather than comparing vectors of two models.

The provider embedder does not know HTTP or providers: the gateway passes it an async function
(``core/cache_embeddings.py``) that calls the model through its own routing, adapters and pooled transport, and
records the call in the ledger. A failed or slow call is a miss, counted in ``failures``: never an error for
the client (the semantic cache fails open).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tollgate.config.cache import SemanticCacheSettings
from tollgate.context import RequestContext
from tollgate.types import JSONObject

if TYPE_CHECKING:
    from tollgate.embeddings import Encoder

log = logging.getLogger("tollgate.cache")

# The gateway's embeddings call for the provider embedder: (text, the request it is for, if any) -> (the
# deployment that answered, as "provider/model", and its vector). Raises on any failure.
ProviderEmbed = Callable[[str, RequestContext | None], Awaitable[tuple[str, list[float]]]]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def space_of(model: str, dim: int) -> str:
    """The id of an embedding space: the model's name (made safe for a Redis key) and the dimension."""
    return f"{_UNSAFE.sub('.', model).strip('.')}.{dim}"


@dataclass(frozen=True, slots=True)
class Embedding:
    space: str
    vector: Any  # numpy float32, unit length


class Embedder(Protocol):
    """Text to a unit vector in a named space, or ``None`` when the text cannot be compared (too long, failure)."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def embed(self, text: str, caller: RequestContext | None) -> Embedding | None: ...

    def report(self) -> JSONObject: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in the gateway (loaded at start, off the event loop; run on one worker thread)."""

    def __init__(self, settings: SemanticCacheSettings, cache_dir: Path | None, encoder: Encoder | None = None) -> None:
        self.settings = settings
        self.encoder = encoder
        self.error: str | None = None
        self._cache_dir = cache_dir
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tollgate-embed")

    @property
    def ready(self) -> bool:
        return self.encoder is not None

    def _load(self) -> Encoder:
        from tollgate.embeddings import load_encoder

        return load_encoder(self.settings.runtime, threads=self.settings.threads, cache_dir=self._cache_dir)

    async def start(self) -> None:
        """Load the encoder (about a second; the first start builds the ONNX graph, a few more). A missing model
        or runtime is logged and reported in the stats: the gateway runs with the exact cache only."""
        if self.encoder is None:
            try:
                self.encoder = await asyncio.get_running_loop().run_in_executor(self._executor, self._load)
            except Exception as exc:  # the gateway must come up without it: report, do not crash
                self.error = str(exc)
                log.error("semantic cache disabled: %s", exc)

    async def stop(self) -> None:
        self._executor.shutdown(wait=False)

    async def embed(self, text: str, caller: RequestContext | None) -> Embedding | None:
        encoder = self.encoder
        if encoder is None:
            return None

        def run() -> Any:
            if encoder.token_count(text) > encoder.max_tokens:
                return None  # the model would not see the end: never compared
            return encoder.embed([text])[0]

        vector = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        if vector is None:
            return None
        return Embedding(space_of("minilm." + encoder.name, int(vector.shape[0])), vector)

    def report(self) -> JSONObject:
        encoder = self.encoder
        return {
            "embedder": "minilm",
            "ready": encoder is not None,
            "error": self.error,
            "model": encoder.name if encoder is not None else None,
            "runtime": encoder.runtime if encoder is not None else None,
        }


class ProviderEmbedder:
    """An embeddings model served by this gateway (``embedding_model``), through the function the core passes in."""

    def __init__(self, settings: SemanticCacheSettings, call: ProviderEmbed) -> None:
        self.settings = settings
        self.model = settings.embedding_model or ""
        self._call = call
        self.calls = 0
        self.failures = 0  # failed, slow or malformed embeddings calls: each one a miss (and no store)
        self.error: str | None = None  # the last failure, for the stats
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Check that the index can be built (it needs numpy); without it the gateway runs with the exact cache."""
        try:
            import numpy  # noqa: F401
        except ImportError:
            self.error = 'numpy is missing: pip install "tollgate[semantic]" (the MiniLM model is not needed)'
            log.error("semantic cache disabled: %s", self.error)
            return
        self._ready = True

    async def stop(self) -> None:
        return None

    async def embed(self, text: str, caller: RequestContext | None) -> Embedding | None:
        if not self._ready or len(text) > self.settings.embedding_max_chars:
            return None
        import numpy as np

        self.calls += 1
        try:
            async with asyncio.timeout(self.settings.embedding_timeout_seconds):
                served_by, values = await self._call(text, caller)
            vector = np.asarray(values, dtype=np.float32)
            norm = float(np.linalg.norm(vector)) if vector.ndim == 1 and vector.size else 0.0
            if not math.isfinite(norm) or norm == 0.0:
                raise ValueError(f"the embeddings model returned no usable vector (shape {vector.shape})")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # fail open: a miss, counted, never an error for the client
            self.failures += 1
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("semantic cache: embeddings call to %s failed (%s); answered as a miss", self.model, exc)
            return None
        # Providers differ on whether they normalise (Ollama does not): cosine similarity is the dot product of
        # unit vectors.
        return Embedding(space_of(served_by, int(vector.shape[0])), vector / norm)

    def report(self) -> JSONObject:
        return {
            "embedder": "provider",
            "ready": self._ready,
            "error": self.error,
            "model": self.model,
            "runtime": "provider",
            "embedding_calls": self.calls,
            "embedding_failures": self.failures,
        }
