"""The semantic cache's vector index: partitions, threshold, expiry, size bound, and the large-partition prefilter."""

from __future__ import annotations

import numpy as np
import pytest

from tollgate.state.semantic_index import VectorIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unit(rng: np.random.Generator, n: int, dim: int = 384) -> np.ndarray:
    # Low intrinsic dimension, like sentence embeddings.
    v = rng.standard_normal((n, 32)) @ rng.standard_normal((32, dim)) + 0.5 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def near(rng: np.random.Generator, v: np.ndarray, noise: float = 0.02) -> np.ndarray:
    out = v + noise * rng.standard_normal(v.shape).astype(np.float32)
    return (out / np.linalg.norm(out)).astype(np.float32)


def test_search_finds_only_its_partition_above_the_threshold() -> None:
    rng = np.random.default_rng(1)
    clock = Clock()
    index = VectorIndex(max_entries=100, clock=clock)
    vecs = unit(rng, 3)
    index.add("p1", "k1", vecs[0], clock.now + 60, "first")
    index.add("p1", "k2", vecs[1], clock.now + 60, "second")
    index.add("p2", "k3", vecs[0], clock.now + 60, "other tenant")
    q = near(rng, vecs[0])
    found = index.search("p1", q, threshold=0.9)
    assert [m.key for m in found] == ["k1"] and found[0].text == "first"
    assert found[0].similarity == pytest.approx(float(vecs[0] @ q), abs=1e-5)
    assert index.search("p3", q, threshold=0.1) == []  # unknown partition
    assert index.search("p1", q, threshold=float(vecs[0] @ q) + 1e-3) == []  # just above: nothing
    everything = index.search("p1", q, threshold=-1.0, limit=5)
    assert [m.key for m in everything] == ["k1", "k2"]  # best first


def test_expired_entries_are_never_returned_and_are_swept() -> None:
    rng = np.random.default_rng(2)
    clock = Clock()
    index = VectorIndex(clock=clock)
    v = unit(rng, 2)
    index.add("p", "short", v[0], clock.now + 10)
    index.add("p", "long", v[1], clock.now + 100)
    index.add("p", "already", v[1], clock.now - 1)  # expired on arrival: not added
    assert len(index) == 2
    clock.now += 11
    assert index.search("p", v[0], threshold=0.99) == []
    assert "short" not in index and len(index) == 1  # dropped when met
    clock.now += 100
    assert index.sweep() == 1 and len(index) == 0 and index.stats()["partitions"] == 0


def test_the_size_bound_drops_the_least_recently_used() -> None:
    rng = np.random.default_rng(3)
    clock = Clock()
    index = VectorIndex(max_entries=3, clock=clock)
    v = unit(rng, 4)
    for i in range(3):
        index.add(f"p{i % 2}", f"k{i}", v[i], clock.now + 60)
    assert [m.key for m in index.search("p0", v[0], 0.99)] == ["k0"]  # k0 used: k1 is now the oldest
    index.add("p1", "k3", v[3], clock.now + 60)
    assert len(index) == 3 and "k1" not in index and "k0" in index


def test_remove_keeps_the_other_rows_right() -> None:
    rng = np.random.default_rng(4)
    clock = Clock()
    index = VectorIndex(clock=clock)
    v = unit(rng, 50)
    for i in range(50):
        index.add("p", f"k{i}", v[i], clock.now + 60, f"t{i}")
    for i in range(0, 50, 3):
        assert index.remove(f"k{i}")
    assert not index.remove("k0")
    for i in range(50):
        found = index.search("p", v[i], 0.999)
        assert ([m.key for m in found] == [f"k{i}"]) == (i % 3 != 0)
        assert all(m.text == f"t{i}" for m in found)
    index.add("p", "k1", v[0], clock.now + 60, "moved")  # a key re-added replaces its vector
    assert [m.text for m in index.search("p", v[0], 0.999)] == ["moved"]
    index.add("q", "k1", v[0], clock.now + 60)  # ... or moves to another partition
    assert index.search("p", v[0], 0.999) == [] and len(index.search("q", v[0], 0.999)) == 1


def test_a_large_partition_uses_the_prefilter_and_stays_exact() -> None:
    rng = np.random.default_rng(5)
    clock = Clock()
    index = VectorIndex(prefilter_min=2000, prefilter_dims=48, clock=clock)
    v = unit(rng, 5000)
    for i in range(5000):
        index.add("big", f"k{i}", v[i], clock.now + 60)
    part = index._partitions["big"]
    assert part.projection is not None  # the prefilter is on
    queries = [near(rng, v[i], 0.03) for i in rng.choice(5000, 50, replace=False)] + list(unit(rng, 50))
    for q in queries:
        for threshold in (0.5, 0.8, 0.95):
            scores = v @ q
            expected = {f"k{i}" for i in np.flatnonzero(scores >= threshold)}
            found = index.search("big", q, threshold=threshold, limit=10_000)
            assert {m.key for m in found} == expected  # the bound never drops a row above the threshold
            for m in found:
                assert m.similarity == pytest.approx(float(scores[int(m.key[1:])]), abs=1e-5)
        rows, _ = part.scores(q, 0.95)
        assert len(rows) < 5000  # and it does skip rows
    with pytest.raises(ValueError, match="384"):
        index.add("big", "bad", np.zeros(10, dtype=np.float32), clock.now + 60)
