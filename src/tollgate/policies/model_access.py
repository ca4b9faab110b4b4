"""ADMIT: a key may call only the models on its allow-list (exact names or ``*`` patterns)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tollgate.core.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.routing.resolver import Route


def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    """An empty list allows everything; otherwise the requested name must match one pattern."""
    return not patterns or any(p == model or fnmatchcase(model, p) for p in patterns)


class ModelAccessPolicy:
    def admit(self, ctx: RequestContext, route: Route) -> None:
        principal = ctx.principal
        if principal is None or not principal.allowed_models:
            return
        if model_allowed(principal.allowed_models, route.requested):
            return
        raise PermissionDeniedError(
            f"Your API key is not allowed to use the model '{route.requested}'. "
            "Call GET /v1/models to see the models you can use.",
            param="model",
            code="model_not_allowed",
        )
