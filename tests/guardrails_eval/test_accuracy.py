"""The PII detector meets its accuracy targets on the regenerated evaluation corpus (two seeds)."""

from __future__ import annotations

import pytest

from tests.guardrails_eval.corpus import NEGATIVE, POSITIVE, generate
from tests.guardrails_eval.evaluate import STRUCTURED, evaluate, overall_precision
from tollgate.config.guardrails import PATTERN_ENTITY_TYPES


@pytest.mark.parametrize("seed", [20261123, 7])
def test_recall_and_precision_targets(seed: int) -> None:
    samples = generate(seed=seed)
    scores = evaluate(samples)
    for entity in STRUCTURED:
        assert scores[entity].recall >= 0.98, (entity, scores[entity].misses[:5])
    for entity in PATTERN_ENTITY_TYPES:  # context-dependent types: a looser floor, still reported per type in the docs
        assert scores[entity].recall >= 0.9, (entity, scores[entity].misses[:5])
    assert overall_precision(scores) >= 0.95, {e: s.false_hits[:3] for e, s in scores.items() if s.false_hits}


def test_corpus_is_deterministic_and_covers_every_type() -> None:
    a, b = generate(), generate()
    assert a == b
    assert set(POSITIVE) == set(PATTERN_ENTITY_TYPES)
    assert len(a) >= 1000
    kinds = {s.kind for s in a}
    assert {f"NEGATIVE:{n}" for n in NEGATIVE} <= kinds
    for sample in a:
        for start, end, _ in sample.spans:
            assert 0 <= start < end <= len(sample.text)


def test_hard_negatives_alone_yield_almost_nothing() -> None:
    negatives = [s for s in generate() if not s.spans]
    scores = evaluate(negatives)
    false_hits = sum(s.predicted for s in scores.values())
    assert false_hits <= len(negatives) * 0.02, {e: s.false_hits for e, s in scores.items() if s.false_hits}
