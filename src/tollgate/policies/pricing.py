"""ADMIT: with ``pricing.unknown_model: block``, refuse a request that could reach a model with no price."""

from __future__ import annotations

from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.pricing import PriceBook
from tollgate.routing.resolver import Route


class UnpricedModelPolicy:
    """Budgets and chargeback are only as good as the prices: an unpriced model would spend invisibly.

    Every candidate of the route must have a price, since a fallback may serve the request. Answers 403
    (``permission_error`` / ``model_not_priced``): the request is well-formed, the gateway's policy refuses it.
    With ``unknown_model: zero`` this policy does nothing; the ledger records cost 0 and warns once per model.
    """

    def __init__(self, prices: PriceBook) -> None:
        self._prices = prices

    async def admit(self, ctx: RequestContext, route: Route) -> None:
        if self._prices.unknown_model != "block":
            return
        missing = [d.label for d in route.candidates if self._prices.price_of(d) is None]
        if not missing:
            return
        raise PermissionDeniedError(
            f"The model '{route.requested}' has no price configured (unpriced: {', '.join(missing)}), and this "
            "gateway refuses unpriced models. Ask an administrator to add it under pricing.models.",
            param="model",
            code="model_not_priced",
        )
