"""The semantic cache's in-process vector index: unit vectors in partitions, each entry with an expiry.

A partition holds the entries whose exact-match part (model, system prompt, earlier turns, parameters, tenant
scope …) is the same: a query is only ever compared with its own partition, so no entry crosses a tenant or a
conversation. Within a partition the search is a dot product over a contiguous float32 matrix (exact). A
partition that grows past ``prefilter_min`` entries also keeps its vectors projected on their first
``prefilter_dims`` principal components (fitted once, on the entries it holds then) and the norm of what the
projection leaves out. The projected score plus the product of the two residual norms bounds each row's
similarity from above (Cauchy-Schwarz), so only the rows whose bound reaches the threshold are scored exactly:
the search stays exact (no hit lost, every similarity true); how many rows it skips depends on how much of
the vectors the projection holds.

Bounds: ``max_entries`` over all partitions (the oldest-used entry goes first) and expiry per entry (expired
entries are never returned, and are swept as the index is written to).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


class Match(NamedTuple):
    key: str
    similarity: float
    text: str


_SWEEP_EVERY = 1024  # adds between two sweeps of expired entries


@dataclass(slots=True)
class _Partition:
    dim: int
    vectors: npt.NDArray[np.float32] = field(init=False)
    expires: npt.NDArray[np.float64] = field(init=False)
    keys: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # what each vector embeds (for the caller's pairwise checks)
    rows: dict[str, int] = field(default_factory=dict)
    projection: npt.NDArray[np.float32] | None = None  # [dim, prefilter_dims] once fitted
    reduced: npt.NDArray[np.float32] | None = None  # [capacity, prefilter_dims]
    residual: npt.NDArray[np.float32] | None = None  # [capacity]: the norm of what the projection leaves out

    def __post_init__(self) -> None:
        self.vectors = np.empty((8, self.dim), dtype=np.float32)
        self.expires = np.empty(8, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.keys)

    def _grow(self) -> None:
        capacity = self.vectors.shape[0] * 2
        vectors = np.empty((capacity, self.dim), dtype=np.float32)
        vectors[: len(self)] = self.vectors[: len(self)]
        expires = np.empty(capacity, dtype=np.float64)
        expires[: len(self)] = self.expires[: len(self)]
        self.vectors, self.expires = vectors, expires
        if self.reduced is not None and self.residual is not None:
            reduced = np.empty((capacity, self.reduced.shape[1]), dtype=np.float32)
            reduced[: len(self)] = self.reduced[: len(self)]
            residual = np.empty(capacity, dtype=np.float32)
            residual[: len(self)] = self.residual[: len(self)]
            self.reduced, self.residual = reduced, residual

    def put(self, key: str, vector: Vector, expires_at: float, text: str) -> None:
        row = self.rows.get(key)
        if row is None:
            if len(self) == self.vectors.shape[0]:
                self._grow()
            row = len(self)
            self.keys.append(key)
            self.texts.append(text)
            self.rows[key] = row
        self.texts[row] = text
        self.vectors[row] = vector
        self.expires[row] = expires_at
        if self.projection is not None and self.reduced is not None and self.residual is not None:
            projected = vector @ self.projection
            self.reduced[row] = projected
            self.residual[row] = np.sqrt(max(0.0, 1.0 - float(projected @ projected)))

    def drop(self, key: str) -> None:
        """Remove ``key``: the last row moves into its place (rows stay contiguous)."""
        row = self.rows.pop(key)
        last = len(self) - 1
        if row != last:
            moved = self.keys[last]
            self.keys[row] = moved
            self.texts[row] = self.texts[last]
            self.rows[moved] = row
            self.vectors[row] = self.vectors[last]
            self.expires[row] = self.expires[last]
            if self.reduced is not None and self.residual is not None:
                self.reduced[row] = self.reduced[last]
                self.residual[row] = self.residual[last]
        self.keys.pop()
        self.texts.pop()

    def fit_prefilter(self, dims: int) -> None:
        n = len(self)
        _, _, vt = np.linalg.svd(self.vectors[:n], full_matrices=False)
        self.projection = np.ascontiguousarray(vt[:dims].T, dtype=np.float32)
        self.reduced = np.empty((self.vectors.shape[0], dims), dtype=np.float32)
        self.reduced[:n] = self.vectors[:n] @ self.projection
        self.residual = np.empty(self.vectors.shape[0], dtype=np.float32)
        energy = np.einsum("ij,ij->i", self.reduced[:n], self.reduced[:n])
        self.residual[:n] = np.sqrt(np.maximum(0.0, 1.0 - energy))

    def scores(self, query: Vector, threshold: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """Rows and exact similarities of every row that may reach ``threshold`` (all rows without a prefilter).

        With the projection P, a unit row x and the query q: x.q = Px.Pq + r_x.r_q, and |r_x.r_q| <= |r_x| |r_q|
        where |r| = sqrt(1 - |Pv|^2). So Px.Pq + |r_x| |r_q| bounds the similarity from above: rows below the
        threshold by that bound cannot be hits and are skipped; the rest are scored exactly. No hit is lost."""
        n = len(self)
        if self.projection is None or self.reduced is None or self.residual is None:
            return np.arange(n), self.vectors[:n] @ query
        projected = query @ self.projection
        residual = float(np.sqrt(max(0.0, 1.0 - float(projected @ projected))))
        bound = self.reduced[:n] @ projected
        bound += residual * self.residual[:n]
        rows = np.flatnonzero(bound >= threshold - 1e-4)  # float32 rounding: keep borderline rows
        return rows, self.vectors[rows] @ query


class VectorIndex:
    """Partitioned cosine-similarity index of unit vectors (see the module docstring)."""

    def __init__(
        self,
        dim: int = 384,
        *,
        max_entries: int = 100_000,
        prefilter_min: int = 8192,
        prefilter_dims: int = 48,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self.prefilter_min = prefilter_min
        self.prefilter_dims = min(prefilter_dims, dim)
        self._clock = clock
        self._partitions: dict[str, _Partition] = {}
        self._where: OrderedDict[str, str] = OrderedDict()  # key -> partition, least recently used first
        self._adds = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    @property
    def nbytes(self) -> int:
        total = 0
        for p in self._partitions.values():
            total += p.vectors.nbytes + p.expires.nbytes
            total += (p.reduced.nbytes if p.reduced is not None else 0) + (
                p.residual.nbytes if p.residual is not None else 0
            )
        return total

    def add(self, partition: str, key: str, vector: Vector, expires_at: float, text: str = "") -> None:
        """Insert (or replace) ``key``; ``vector`` must be unit length, of ``dim`` float32."""
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} dimensions, got shape {vector.shape}")
        if expires_at <= self._clock():
            return
        previous = self._where.get(key)
        if previous is not None and previous != partition:
            self.remove(key)
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition(self.dim)
        part.put(key, vector.astype(np.float32, copy=False), expires_at, text)
        self._where[key] = partition
        self._where.move_to_end(key)
        if part.projection is None and len(part) >= self.prefilter_min:
            part.fit_prefilter(self.prefilter_dims)
        while len(self._where) > self.max_entries:
            self.remove(next(iter(self._where)))
        self._adds += 1
        if self._adds % _SWEEP_EVERY == 0:
            self.sweep()

    def search(self, partition: str, vector: Vector, threshold: float, limit: int = 3) -> list[Match]:
        """Up to ``limit`` unexpired entries of ``partition`` with similarity >= ``threshold``, best first."""
        part = self._partitions.get(partition)
        if part is None or not len(part):
            return []
        rows, sims = part.scores(vector.astype(np.float32, copy=False), threshold)
        good = np.flatnonzero(sims >= threshold)
        if not len(good):
            return []
        order = good[np.argsort(-sims[good])]
        now = self._clock()
        found: list[Match] = []
        expired: list[str] = []
        for i in order:
            row = int(rows[i])
            key = part.keys[row]
            if part.expires[row] <= now:
                expired.append(key)
                continue
            found.append(Match(key, float(sims[i]), part.texts[row]))
            if len(found) == limit:
                break
        for key in expired:
            self.remove(key)
        for match in found:
            self._where.move_to_end(match.key)
        return found

    def remove(self, key: str) -> bool:
        partition = self._where.pop(key, None)
        if partition is None:
            return False
        part = self._partitions[partition]
        part.drop(key)
        if not len(part):
            del self._partitions[partition]
        return True

    def sweep(self) -> int:
        """Remove every expired entry; returns how many."""
        now = self._clock()
        dead = [
            key
            for part in self._partitions.values()
            for key, exp in zip(part.keys, part.expires[: len(part)].tolist(), strict=True)
            if exp <= now
        ]
        for key in dead:
            self.remove(key)
        return len(dead)

    def clear(self) -> int:
        count = len(self._where)
        self._partitions.clear()
        self._where.clear()
        return count

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self), "partitions": len(self._partitions), "bytes": self.nbytes}
