"""ADMIT: one atomic counter reservation for every policy that reserves on the same ``CounterStore``.

Rate limits and budgets both take amounts on counters before a request goes upstream. Taken one policy at
a time, that is one store round trip each (two ``EVALSHA`` calls on Redis, the larger part of the governance
cost of a request). A ``Claim`` describes what one policy wants to take for one request, with no I/O;
``reserve_claims`` takes every claim of a request in one ``CounterStore.reserve`` call, which is all or
nothing across all of them, so the guarantees of each policy hold unchanged:

* nothing is taken unless everything fits (a request a rate limit refuses holds no budget, not even for a
  moment, exactly as when the budget ran after the rate limit);
* the refusal belongs to the claim of the first charge that did not fit, and claims are listed in ADMIT
  order (rate limits before budgets), so a caller over both limits gets the rate limit's 429, as before;
* a claim may ask to try again smaller once (a budgeted stream that can still use what is left): nothing
  was taken by the refused attempt, so trying again is safe.

``ReservationPolicy`` is the ADMIT policy that does this for a group of ``Reserving`` policies sharing one
store; each of them still works alone through its own ``admit`` (which is a group of one).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from typing import Protocol

from tollgate.context import RequestContext
from tollgate.routing.resolver import Route
from tollgate.state.counters import Charge, CounterStore, CounterStoreUnavailableError, Decision


class Claim(Protocol):
    """What one policy wants to reserve for one request, and what it does with the answer."""

    @property
    def charges(self) -> Sequence[Charge]: ...

    def granted(self, decision: Decision) -> None:
        """Everything was taken: record what this claim holds (settled in FINALIZE)."""
        ...

    def shrink(self, decision: Decision) -> bool:
        """This claim's charge was the one refused: adjust ``charges`` to try once more and return True, or
        return False to refuse."""
        ...

    def refused(self, decision: Decision) -> Exception | None:
        """Nothing was taken. Return the error to raise if this claim's charge was the one refused (the
        decision's ``refused`` is then >= 0), else None."""
        ...

    def unavailable(self) -> Exception:
        """The store is unreachable and fails closed: the error to answer with."""
        ...


class Reserving(Protocol):
    """A policy that can describe its ADMIT reservation as a ``Claim`` on ``store``."""

    @property
    def store(self) -> CounterStore: ...

    def claim(self, ctx: RequestContext, route: Route, rid: str) -> Claim | None:
        """This request's claim under reservation id ``rid``, or None when there is nothing to reserve."""
        ...


async def reserve_claims(store: CounterStore, rid: str, claims: Sequence[Claim]) -> None:
    """Take every claim in one atomic reservation ``rid``, or raise the refusing claim's error."""
    retried = False
    while True:
        bounds: list[int] = [0]
        charges: list[Charge] = []
        for claim in claims:
            charges.extend(claim.charges)
            bounds.append(len(charges))
        try:
            decision = await store.reserve(rid, charges)
        except CounterStoreUnavailableError:
            # The first claim speaks for the group (its policy counts the refusal); the others took nothing.
            errors = [claim.unavailable() for claim in claims]
            raise errors[0] from None
        parts = [_part(decision, bounds[i], bounds[i + 1]) for i in range(len(claims))]
        if decision.allowed:
            for claim, part in zip(claims, parts, strict=True):
                claim.granted(part)
            return
        owner = next(i for i, part in enumerate(parts) if part.refused >= 0)
        if not retried and claims[owner].shrink(parts[owner]):
            retried = True
            continue
        error: Exception | None = None
        for claim, part in zip(claims, parts, strict=True):
            own = claim.refused(part)
            if own is not None and error is None:
                error = own
        if error is None:  # a claim broke its contract; refuse rather than admit untaken
            raise RuntimeError(f"reservation {rid} was refused but no claim owned the refusal")
        raise error


def _part(decision: Decision, start: int, end: int) -> Decision:
    """The slice of ``decision`` that concerns charges ``start:end``, with ``refused`` relative to them."""
    if decision.allowed:
        return Decision(True, decision.levels[start:end])
    refused = decision.refused - start if start <= decision.refused < end else -1
    return Decision(False, decision.levels[start:end], refused, decision.retry_after_ms)


class ReservationPolicy:
    """ADMIT for ``parts`` (all on ``store``, in ADMIT order): one store call per request for all of them."""

    def __init__(self, store: CounterStore, parts: Sequence[Reserving]) -> None:
        if any(part.store is not store for part in parts):
            raise ValueError("every policy of a reservation group must use the group's counter store")
        self.store = store
        self.parts = tuple(parts)
        # Reservation ids must be unique across replicas sharing Redis, and cheap to make.
        self._node = "g" + secrets.token_hex(4) + ":"
        self._seq = itertools.count()

    async def admit(self, ctx: RequestContext, route: Route) -> None:
        if ctx.principal is None:
            return
        rid = f"{self._node}{next(self._seq)}"
        claims: list[Claim] = []
        for part in self.parts:
            claim = part.claim(ctx, route, rid)
            if claim is not None:
                claims.append(claim)
        if claims:
            await reserve_claims(self.store, rid, claims)
