"""Traffic split (A/B): assign each request to one deployment of a route (its arm) by weight.

With ``sticky: user`` or ``sticky: key`` the arm is a pure function of the caller and the weights: a stable
hash of the caller id (and the model name) is a point in [0, 1), and the arm is the deployment whose share
of the cumulative weights holds that point. The same caller gets the same arm on every request, in every
process and replica, while the arms and weights are unchanged; changing one weight moves only the callers
whose point crosses a boundary. With ``sticky: none`` each request draws a fresh point.

The arm is tried first; the route's other deployments follow in the strategy's order as fallbacks, so a
failing arm never fails a request that another deployment can answer. The request stays assigned to its
arm either way (metrics and the ledger record both the arm and the deployment that answered).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tollgate.context import RequestContext
from tollgate.routing.strategies import Candidate

Sticky = Literal["user", "key", "none"]
STICKY: tuple[Sticky, ...] = ("user", "key", "none")

# The ledger tag that carries the arm (a tag, so no schema migration: reports can group by it).
ARM_TAG = "tollgate_arm"


@dataclass(frozen=True, slots=True)
class Split:
    """A model's traffic split: how callers stick to an arm; the arms' shares are their ``weight``."""

    sticky: Sticky = "none"
    salt: str = ""  # mixed into the hash (the model name): two splits do not assign callers alike


def arms(plan: Sequence[Candidate]) -> list[Candidate]:
    """The deployments a split chooses among: the route's first priority tier (later tiers are fallbacks)."""
    if not plan:
        return []
    first = min(c.priority for c in plan)
    return [c for c in plan if c.priority == first]


def point(salt: str, caller: str) -> float:
    """A stable, uniform point in [0, 1) for ``caller``: the same in every process and every version."""
    digest = hashlib.blake2b(f"{salt}\x00{caller}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def choose(candidates: Sequence[Candidate], at: float) -> Candidate:
    """The candidate whose share of the cumulative weights (in config order) holds ``at`` in [0, 1)."""
    total = sum(c.weight for c in candidates)
    edge = 0.0
    for cand in candidates:
        edge += cand.weight / total
        if at < edge:
            return cand
    return candidates[-1]  # rounding: ``at`` just below 1.0


def caller_id(ctx: RequestContext, sticky: Sticky) -> str | None:
    """Who the request is for, as ``sticky`` asks. ``user``: the end user the client names (the OpenAI
    ``user`` field, or Anthropic's ``metadata.user_id``), else the caller's user id, else its key id;
    ``key``: the key id. ``None`` (a fresh draw) for ``none`` or when nothing identifies the caller."""
    if sticky == "none":
        return None
    principal = ctx.principal
    if sticky == "user":
        body = ctx.body
        named = body.get("user") if body is not None else None
        if not isinstance(named, str) or not named:
            meta = ctx.metadata
            named = meta.get("user_id") if meta is not None else None
        if isinstance(named, str) and named:
            return "u:" + named
        if principal is not None and principal.user_id:
            return "u:" + principal.user_id
    if principal is not None:
        return "k:" + principal.key_id
    return None


def assign(split: Split, plan: Sequence[Candidate], ctx: RequestContext, rng: random.Random) -> Candidate | None:
    """The arm of this request, or ``None`` when the route has no deployment to split between."""
    candidates = arms(plan)
    if not candidates:
        return None
    caller = caller_id(ctx, split.sticky)
    at = rng.random() if caller is None else point(split.salt, caller)
    return choose(candidates, at)


def arm_first(ordered: list[Candidate], arm: Candidate) -> list[Candidate]:
    """``ordered`` with the arm moved to the front (the others keep the strategy's order)."""
    if ordered and ordered[0] is arm:
        return ordered
    return [arm, *(c for c in ordered if c is not arm)]
