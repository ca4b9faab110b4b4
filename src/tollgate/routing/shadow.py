"""Shadow traffic: what a candidate deployment would have answered, compared with the primary.

Pure parts only: the settings of a model's shadow, answer similarity, and the per-model comparison that
``GET /admin/shadow`` reports. Sampling, the background calls and the ledger rows are the shadow policy's
(policies/shadow.py).
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from dataclasses import dataclass, field
from statistics import median

from tollgate.providers.base import Deployment
from tollgate.types import JSONObject, JSONValue

# Recent pairs kept per model for percentiles (older ones only count in the totals).
WINDOW = 1000
# Words compared per answer by the sequence ratio (difflib is quadratic in the worst case).
MAX_WORDS = 1000
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class ShadowTarget:
    """A model's shadow: the candidate deployment, the share of requests mirrored, the concurrency cap."""

    deployment: Deployment
    sample: float
    max_concurrency: int = 4

    @property
    def key(self) -> str:
        return self.deployment.label


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())[:MAX_WORDS]


def similarity(a: str, b: str) -> tuple[float, float]:
    """Two cheap similarities of two answers, each in [0, 1]: the Jaccard index of their word sets, and
    difflib's ratio over their word sequences (order matters). Two empty answers are identical."""
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return 1.0, 1.0
    sa, sb = set(wa), set(wb)
    jaccard = len(sa & sb) / len(sa | sb)
    ratio = difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()
    return jaccard, ratio


@dataclass(frozen=True, slots=True)
class Outcome:
    """One side of a mirrored request: how it went."""

    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    error: str | None  # the error type, None on success
    text: str | None  # the answer's text (None when unknown, e.g. a relayed stream or an error)


@dataclass(slots=True)
class _Side:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def add(self, o: Outcome) -> None:
        self.requests += 1
        self.errors += 1 if o.error is not None else 0
        self.input_tokens += o.input_tokens
        self.output_tokens += o.output_tokens
        self.cost_nanos += o.cost_nanos
        self.latencies.append(o.latency_ms)

    def p50(self) -> float | None:
        return median(self.latencies) if self.latencies else None

    def report(self) -> JSONObject:
        lat = sorted(self.latencies)
        n = self.requests
        return {
            "requests": n,
            "errors": self.errors,
            "error_rate": round(self.errors / n, 4) if n else None,
            "latency_ms": {
                "p50": round(median(lat), 3) if lat else None,
                "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3) if lat else None,
                "mean": round(sum(lat) / len(lat), 3) if lat else None,
            },
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "output_tokens_per_request": round(self.output_tokens / n, 2) if n else None,
            "cost_usd": round(self.cost_nanos / 1e9, 9),
        }


class ShadowStats:
    """The running comparison of one model's primary answers with its candidate's (in this process)."""

    def __init__(self, model: str, candidate: str) -> None:
        self.model = model
        self.candidate = candidate
        self.primary = _Side()
        self.shadow = _Side()
        self.dropped = 0  # sampled but not sent: the shadow concurrency cap was reached
        self.jaccard: deque[float] = deque(maxlen=WINDOW)
        self.ratio: deque[float] = deque(maxlen=WINDOW)
        self.primary_deployments: dict[str, int] = {}

    def add(self, primary_deployment: str, primary: Outcome, shadow: Outcome) -> None:
        self.primary.add(primary)
        self.shadow.add(shadow)
        if len(self.primary_deployments) < 100 or primary_deployment in self.primary_deployments:
            self.primary_deployments[primary_deployment] = self.primary_deployments.get(primary_deployment, 0) + 1
        if primary.error is None and shadow.error is None and primary.text is not None and shadow.text is not None:
            jaccard, ratio = similarity(primary.text, shadow.text)
            self.jaccard.append(jaccard)
            self.ratio.append(ratio)

    def report(self, sample: float | None, in_flight: int) -> JSONObject:
        def summary(values: deque[float]) -> JSONValue:
            if not values:
                return None
            ordered = sorted(values)
            return {
                "mean": round(sum(ordered) / len(ordered), 4),
                "p50": round(median(ordered), 4),
                "min": round(ordered[0], 4),
            }

        p50, s50 = self.primary.p50(), self.shadow.p50()
        return {
            "model": self.model,
            "candidate": self.candidate,
            "sample": sample,
            "mirrored": self.shadow.requests,
            "dropped": self.dropped,
            "in_flight": in_flight,
            "primary_deployments": dict(self.primary_deployments),
            "primary": self.primary.report(),
            "candidate_results": self.shadow.report(),
            "comparison": {
                "latency_p50_ratio": round(s50 / p50, 4) if p50 and s50 is not None else None,
                "cost_ratio": round(self.shadow.cost_nanos / self.primary.cost_nanos, 4)
                if self.primary.cost_nanos
                else None,
                "similarity_compared": len(self.ratio),
                "similarity_jaccard": summary(self.jaccard),
                "similarity_sequence": summary(self.ratio),
            },
        }
