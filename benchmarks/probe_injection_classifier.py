#!/usr/bin/env python3
"""Would an ML classifier help the prompt-injection guard? A measured probe, not a shipped backend.

The only model this machine can run offline is all-MiniLM-L6-v2 (the semantic cache's), and no labelled
injection dataset or classifier weights are installable offline. So the probe trains the classifier that is
possible here: a logistic-regression head on MiniLM sentence embeddings, fitted on the team's corpus
(tests/guardrails_eval/injection_corpus.py, plain texts of both splits) and tested on the independent, blindly
written set (tests/guardrails_eval/independent_injection.py, plain texts), alone and OR-ed with the rule-based
detector at its default threshold. It also times one embedding per text.

  PYTHONPATH=.:src python3 benchmarks/probe_injection_classifier.py
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from tests.guardrails_eval import independent_injection
from tests.guardrails_eval.injection_corpus import generate

from tollgate.embeddings import load_encoder
from tollgate.guardrails.injection import InjectionDetector

RULE_THRESHOLD = 0.5  # guardrails.injection.direct.threshold's default


def fit(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.float64], l2: float = 1e-3
) -> tuple[npt.NDArray[np.float64], float]:
    """Class-balanced logistic regression by gradient descent (numpy only)."""
    w = np.zeros(x.shape[1])
    b = 0.0
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    for _ in range(3000):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * weight
        w -= 0.5 * (x.T @ g / len(y) + l2 * w)
        b -= 0.5 * float(g.mean())
    return w, b


def main() -> None:
    train = [c for c in generate() if c.obfuscation == "none"]
    test = [c for c in independent_injection.generate() if c.obfuscation == "none"]
    encoder = load_encoder("auto")
    encoder.embed(["warm-up"])
    started = time.perf_counter()
    x_test = encoder.embed([c.text for c in test])
    per_text_ms = (time.perf_counter() - started) * 1000 / len(test)
    x_train = encoder.embed([c.text for c in train])
    y_train = np.array([1.0 if c.attack else 0.0 for c in train])
    attack = np.array([c.attack for c in test])
    benign = ~attack
    detector = InjectionDetector()
    rules = np.array([detector.score(c.text).score >= RULE_THRESHOLD for c in test])
    w, b = fit(x_train, y_train)
    prob = 1 / (1 + np.exp(-(x_test @ w + b)))
    print(f"train {len(train)} texts, test {int(attack.sum())} attacks + {int(benign.sum())} benign (independent set)")
    print(f"embedding: {per_text_ms:.1f} ms per text (batch of {len(test)}, this machine)\n")
    print("| detector | detection | false positives |")
    print("|---|---:|---:|")
    print(f"| rules (threshold {RULE_THRESHOLD}) | {rules[attack].mean():.3f} | {rules[benign].mean():.3f} |")
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        ml = prob >= threshold
        both = ml | rules
        print(f"| classifier >= {threshold} | {ml[attack].mean():.3f} | {ml[benign].mean():.3f} |")
        print(f"| rules OR classifier >= {threshold} | {both[attack].mean():.3f} | {both[benign].mean():.3f} |")


if __name__ == "__main__":
    main()
