"""Scores the injection detector on its corpus: detection and false-positive rates, per split and category."""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field

from tests.guardrails_eval.injection_corpus import Case, Split, generate
from tollgate.guardrails.injection import InjectionDetector

DEFAULT_THRESHOLD = 0.5  # the default of guardrails.injection.direct/indirect.threshold


@dataclass(slots=True)
class Rates:
    attacks: int = 0
    detected: int = 0
    benign: int = 0
    false_positives: int = 0
    misses: list[str] = field(default_factory=list)
    false_hits: list[str] = field(default_factory=list)

    @property
    def detection(self) -> float:
        return self.detected / self.attacks if self.attacks else 1.0

    @property
    def fp_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0


def evaluate(
    cases: list[Case], detector: InjectionDetector | None = None, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Rates]:
    """Rates keyed by ``all``, the split (``dev``/``heldout``), ``attack:<category>``, ``obfuscation:<name>``
    and ``benign:<category>``."""
    detector = detector or InjectionDetector()
    out: dict[str, Rates] = defaultdict(Rates)
    for case in cases:
        verdict = detector.score(case.text)
        flagged = verdict.score >= threshold
        keys = ["all", case.split]
        keys += [f"attack:{case.category}", f"obfuscation:{case.obfuscation}"] if case.attack else []
        keys += [] if case.attack else [f"benign:{case.category}"]
        for key in keys:
            rates = out[key]
            if case.attack:
                rates.attacks += 1
                rates.detected += flagged
                if not flagged:
                    rates.misses.append(f"{verdict.score:.2f} {case.obfuscation} {case.text[:110]!r}")
            else:
                rates.benign += 1
                rates.false_positives += flagged
                if flagged:
                    rates.false_hits.append(f"{verdict.score:.2f} {verdict.rules} {case.text[:110]!r}")
    return dict(out)


def markdown_table(rates: dict[str, Rates]) -> str:
    lines = ["| slice | attacks | detection | benign | false positives | FP rate |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("all", "dev", "heldout", *sorted(k for k in rates if ":" in k)):
        r = rates[key]
        det = f"{r.detection:.3f}" if r.attacks else ""
        fp = f"{r.fp_rate:.3f}" if r.benign else ""
        lines.append(
            f"| {key} | {r.attacks or ''} | {det} | {r.benign or ''} | {r.false_positives if r.benign else ''} | {fp} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # Development shows the misses and false positives of one split only (``dev`` by default): tuning
    # on the held-out split would make its numbers meaningless.
    split: Split = "heldout" if sys.argv[1:] == ["heldout"] else "dev"
    result = evaluate(generate())
    print(markdown_table(result))
    for line in result[split].misses:
        print("MISS", line)
    for line in result[split].false_hits:
        print("FALSE", line)
