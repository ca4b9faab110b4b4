"""Scores names and locations (the PII guard with NER on) on the hand-written corpus (run it for a table)."""

from __future__ import annotations

from tests.guardrails_eval.corpus import Sample
from tests.guardrails_eval.evaluate import Score, _same
from tests.guardrails_eval.ner_corpus import generate
from tollgate.config.guardrails import NER_ENTITY_TYPES, NEREntityType
from tollgate.guardrails.ner import SpacyNER
from tollgate.guardrails.pii import PIIDetector, merge_names


def evaluate(samples: list[Sample], ner: SpacyNER) -> dict[NEREntityType, Score]:
    """Recall and precision of PERSON and LOCATION, as the policy finds them (patterns first, then the model)."""
    detector = PIIDetector()
    scores: dict[NEREntityType, Score] = {e: Score() for e in NER_ENTITY_TYPES}
    for sample in samples:
        found = merge_names(detector.find(sample.text), ner.find(sample.text), sample.text)
        predicted = [(m.start, m.end, m.entity) for m in found if m.entity in scores]
        for truth in sample.spans:
            score = scores[truth[2]]  # type: ignore[index]
            score.truth += 1
            if any(_same(p, truth) for p in predicted):
                score.found += 1
            else:
                score.misses.append(f"{sample.text!r} -> {[(sample.text[s:e], t) for s, e, t in predicted]}")
        for pred in predicted:
            score = scores[pred[2]]  # type: ignore[index]
            score.predicted += 1
            if any(_same(pred, t) for t in sample.spans):
                score.correct += 1
            else:
                score.false_hits.append(f"{sample.text[pred[0] : pred[1]]!r} ({pred[2]}) in {sample.text!r}")
    return scores


def masked_recall(samples: list[Sample], ner: SpacyNER) -> float:
    """Share of true values masked at all: found as PERSON or LOCATION, whichever (both are masked alike by
    default, so a place taken for a person still never reaches the provider)."""
    detector = PIIDetector()
    truth = found = 0
    for sample in samples:
        spans = merge_names(detector.find(sample.text), ner.find(sample.text), sample.text)
        predicted = [(m.start, m.end) for m in spans if m.entity in NER_ENTITY_TYPES]
        for start, end, _ in sample.spans:
            truth += 1
            found += any(_same((s, e, "PERSON"), (start, end, "PERSON")) for s, e in predicted)
    return found / truth if truth else 1.0


def markdown_table(samples: list[Sample], scores: dict[NEREntityType, Score], masked: float) -> str:
    negatives = sum(1 for s in samples if not s.spans)
    false_on_negatives = sum(1 for s in scores.values() for hit in s.false_hits if hit.split(" in ", 1)[1] in {
        repr(n.text) for n in samples if not n.spans})  # fmt: skip
    lines = [
        f"Corpus: {len(samples)} sentences ({len(samples) - negatives} with names or places, {negatives} hard "
        f"negatives), {sum(s.truth for s in scores.values())} true values; {false_on_negatives} detections "
        "in the hard negatives.",
        "",
        "| entity type | true values | recall | detections | precision |",
        "|---|---:|---:|---:|---:|",
    ]
    for entity, s in scores.items():
        lines.append(f"| {entity} | {s.truth} | {s.recall:.3f} | {s.predicted} | {s.precision:.3f} |")
    lines.append(f"| either type (masked at all) | {sum(s.truth for s in scores.values())} | {masked:.3f} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    from tollgate.config.guardrails import NERConfig

    corpus = generate()
    ner = SpacyNER(NERConfig(enabled=True, cache_entries=0))
    result = evaluate(corpus, ner)
    print(markdown_table(corpus, result, masked_recall(corpus, ner)))
    for entity, s in result.items():
        for line in s.misses:
            print("MISS", entity, line)
        for line in s.false_hits:
            print("FALSE", entity, line)
