"""Scores the PII detector on the generated corpus: recall and precision per entity type (run it for a table)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.guardrails_eval.corpus import Sample, generate
from tollgate.config.guardrails import PATTERN_ENTITY_TYPES, EntityType
from tollgate.guardrails.pii import PIIDetector

# A detected span counts when its type is right and its bounds differ from the truth by at most this many
# characters in all (a quote or bracket taken along is still a correct, fully masked detection).
BOUNDARY_SLACK = 3

# Types with a fixed format or checksum, held to the recall target; the others need context to be found.
STRUCTURED: tuple[EntityType, ...] = (
    "EMAIL", "PHONE", "CREDIT_CARD", "US_SSN", "IBAN", "IP_ADDRESS", "UK_NINO", "OPENAI_KEY", "ANTHROPIC_KEY",
    "AWS_ACCESS_KEY", "GITHUB_TOKEN", "JWT", "PRIVATE_KEY",
)  # fmt: skip


@dataclass(slots=True)
class Score:
    truth: int = 0
    found: int = 0  # true values detected (for recall)
    predicted: int = 0
    correct: int = 0  # detections that are right (for precision)
    misses: list[str] = field(default_factory=list)
    false_hits: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0


def _same(a: tuple[int, int, EntityType], b: tuple[int, int, EntityType]) -> bool:
    if a[2] != b[2] or a[1] <= b[0] or b[1] <= a[0]:
        return False
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) <= BOUNDARY_SLACK


def evaluate(samples: list[Sample], detector: PIIDetector | None = None) -> dict[EntityType, Score]:
    detector = detector or PIIDetector()
    scores = {e: Score() for e in PATTERN_ENTITY_TYPES}
    for sample in samples:
        predicted = [(m.start, m.end, m.entity) for m in detector.find(sample.text)]
        for truth in sample.spans:
            score = scores[truth[2]]
            score.truth += 1
            if any(_same(p, truth) for p in predicted):
                score.found += 1
            else:
                score.misses.append(f"{sample.text!r} -> {[(sample.text[s:e], t) for s, e, t in predicted]}")
        for pred in predicted:
            score = scores[pred[2]]
            score.predicted += 1
            if any(_same(pred, t) for t in sample.spans):
                score.correct += 1
            else:
                score.false_hits.append(f"{sample.text[pred[0] : pred[1]]!r} in {sample.text!r}")
    return scores


def overall_precision(scores: dict[EntityType, Score]) -> float:
    predicted = sum(s.predicted for s in scores.values())
    return sum(s.correct for s in scores.values()) / predicted if predicted else 1.0


def markdown_table(samples: list[Sample], scores: dict[EntityType, Score]) -> str:
    negatives = sum(1 for s in samples if not s.spans)
    lines = [
        f"Corpus: {len(samples)} texts ({len(samples) - negatives} with PII, {negatives} hard negatives), "
        f"{sum(s.truth for s in scores.values())} true values.",
        "",
        "| entity type | kind | true values | recall | detections | precision |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for entity, s in scores.items():
        kind = "structured" if entity in STRUCTURED else "context"
        lines.append(f"| {entity} | {kind} | {s.truth} | {s.recall:.3f} | {s.predicted} | {s.precision:.3f} |")
    lines.append(f"| **overall** | | | | | **{overall_precision(scores):.3f}** |")
    return "\n".join(lines)


if __name__ == "__main__":
    corpus = generate()
    result = evaluate(corpus)
    print(markdown_table(corpus, result))
    for entity, s in result.items():
        for line in s.misses[:5]:
            print("MISS", entity, line)
        for line in s.false_hits[:5]:
            print("FALSE", entity, line)
