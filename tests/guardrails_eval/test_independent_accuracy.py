"""The detectors meet the issue's targets on the independent set written blind (independent_injection.py,
independent_pii.py): injection detection >= 0.90 at <= 0.02 false positives, on the whole set and on each half;
PII recall >= 0.98 for every structured type and precision >= 0.95 overall. The blind numbers (before the
detectors were changed) are in docs/guardrails.md; these are floors against regressions."""

from __future__ import annotations

import pytest

from tests.guardrails_eval import independent_injection, independent_pii
from tests.guardrails_eval.evaluate import STRUCTURED, evaluate, overall_precision
from tests.guardrails_eval.injection_evaluate import evaluate as evaluate_injection


@pytest.mark.parametrize("split", ["all", "dev", "heldout"])
def test_injection_targets_on_the_independent_set(split: str) -> None:
    rates = evaluate_injection(independent_injection.generate())[split]
    assert rates.detection >= 0.90, rates.misses
    assert rates.fp_rate <= 0.02, rates.false_hits


def test_injection_indirect_attacks_and_benign_documents() -> None:
    rates = evaluate_injection(independent_injection.generate())
    for category in independent_injection.INDIRECT:
        assert rates[f"attack:{category}"].detection >= 0.9, rates[f"attack:{category}"].misses
    # texts that talk about attacks, prompts and system prompts are where a keyword detector goes wrong
    for category in ("security_talk", "prompt_engineering", "system_prompt_talk", "ignore_error", "documents"):
        assert rates[f"benign:{category}"].false_positives <= 1, rates[f"benign:{category}"].false_hits


def test_pii_targets_on_the_independent_set() -> None:
    scores = evaluate(independent_pii.generate())
    for entity in STRUCTURED:
        assert scores[entity].recall >= 0.98, (entity, scores[entity].misses[:5])
    assert overall_precision(scores) >= 0.95, {e: s.false_hits[:3] for e, s in scores.items() if s.false_hits}


def test_pii_hard_negatives_of_the_independent_set_yield_almost_nothing() -> None:
    negatives = [s for s in independent_pii.generate() if not s.spans]
    scores = evaluate(negatives)
    assert sum(s.predicted for s in scores.values()) <= len(negatives) * 0.02, {
        e: s.false_hits for e, s in scores.items() if s.false_hits
    }
