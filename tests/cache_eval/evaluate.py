"""The semantic cache's quality on the labelled pairs: would the second text of a pair hit the first one's entry?

A pair hits when the two texts land in the same partition (the guards: numbers and negation), their similarity
reaches the threshold, and the pairwise checks pass (``compatible``), exactly as ``SemanticCache`` decides.
Run it to print the threshold table:
``PYTHONPATH=src python -m tests.cache_eval.evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tollgate.embeddings import Encoder
from tollgate.policies.semantic_cache import compatible, partition_of

HERE = Path(__file__).parent
_SAME_REST: dict[str, object] = {"format": "openai", "route": [["openai", "gpt-4o-mini"]], "scope": "org:eval"}


@dataclass(frozen=True, slots=True)
class Pair:
    kind: str  # "paraphrase", or the near miss's kind: negation, number, entity, time, unit, meaning, scope...
    a: str
    b: str

    @property
    def should_hit(self) -> bool:
        return self.kind == "paraphrase"


def load_heldout() -> list[Pair]:
    """The held-out pairs (heldout.tsv): never used to choose the threshold or write the guards."""
    pairs: list[Pair] = []
    for line in (HERE / "heldout.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, a, b = line.split("\t")
            pairs.append(Pair(kind, a, b))
    return pairs


def load_heldout2() -> list[Pair]:
    """The second held-out pairs (heldout2.tsv): written blind, without seeing the cache's code, docs or other sets."""
    return _load_kinded(HERE / "heldout2.tsv")


def _load_kinded(path: Path) -> list[Pair]:
    pairs: list[Pair] = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            kind, a, b = line.split("\t")
            pairs.append(Pair(kind, a, b))
    return pairs


def load_pairs() -> list[Pair]:
    """The development pairs (paraphrases.tsv, near_misses.tsv): what the threshold and the guards were tuned on."""
    pairs: list[Pair] = []
    for line in (HERE / "paraphrases.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            a, b = line.split("\t")
            pairs.append(Pair("paraphrase", a, b))
    for line in (HERE / "near_misses.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, a, b = line.split("\t")
            pairs.append(Pair(kind, a, b))
    return pairs


@dataclass(frozen=True, slots=True)
class Scored:
    pair: Pair
    similarity: float
    same_partition: bool

    def hit(self, threshold: float) -> bool:
        return (
            self.same_partition
            and self.similarity >= threshold
            and compatible(self.pair.b, self.pair.a, self.similarity)
        )


def score(encoder: Encoder, pairs: list[Pair]) -> list[Scored]:
    a = encoder.embed([p.a for p in pairs])
    b = encoder.embed([p.b for p in pairs])
    sims = np.einsum("ij,ij->i", a, b)
    return [
        Scored(p, float(s), partition_of(p.a, _SAME_REST) == partition_of(p.b, _SAME_REST))
        for p, s in zip(pairs, sims.tolist(), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Quality:
    threshold: float
    true_hits: int
    false_hits: int
    paraphrases: int
    near_misses: int

    @property
    def precision(self) -> float:
        hits = self.true_hits + self.false_hits
        return self.true_hits / hits if hits else 1.0

    @property
    def recall(self) -> float:
        return self.true_hits / self.paraphrases if self.paraphrases else 0.0


def quality(scored: list[Scored], threshold: float) -> Quality:
    true_hits = sum(1 for s in scored if s.pair.should_hit and s.hit(threshold))
    false_hits = sum(1 for s in scored if not s.pair.should_hit and s.hit(threshold))
    paraphrases = sum(1 for s in scored if s.pair.should_hit)
    return Quality(threshold, true_hits, false_hits, paraphrases, len(scored) - paraphrases)


def report(name: str, scored: list[Scored]) -> None:
    print(f"## {name}\n")
    print("| threshold | precision | recall | paraphrase hits | false hits |")
    print("|---|---|---|---|---|")
    for t in (0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.90, 0.92, 0.95):
        q = quality(scored, t)
        print(
            f"| {t:.2f} | {q.precision:.3f} | {q.recall:.3f} | {q.true_hits}/{q.paraphrases} |"
            f" {q.false_hits}/{q.near_misses} |"
        )
    print("\nfalse hits at the default threshold, and the highest-scoring near misses in the same partition:")
    worst = sorted((s for s in scored if not s.pair.should_hit and s.hit(0.0)), key=lambda s: -s.similarity)
    for s in worst[:15]:
        print(f"  {s.similarity:.3f} {s.pair.kind}: {s.pair.a} / {s.pair.b}")
    blocked = [s for s in scored if not s.pair.should_hit and not s.same_partition]
    print(f"\nnear misses kept apart by the guards: {len(blocked)}")
    lost = [s for s in scored if s.pair.should_hit and not s.same_partition]
    print(f"paraphrases split by the guards: {len(lost)}", [s.pair.a for s in lost])
    print("\nlowest paraphrases:")
    for s in sorted((s for s in scored if s.pair.should_hit), key=lambda s: s.similarity)[:8]:
        print(f"  {s.similarity:.3f} {s.pair.a} / {s.pair.b}")
    print()


def main() -> None:
    from tollgate.embeddings import load_encoder

    encoder = load_encoder()
    report("dev set (tuned on)", score(encoder, load_pairs()))
    report("held-out set", score(encoder, load_heldout()))
    report("held-out set 2 (written blind)", score(encoder, load_heldout2()))


if __name__ == "__main__":
    main()
