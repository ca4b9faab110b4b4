"""ADMIT: a key may call only the models on its allow-list (exact names or ``*`` patterns)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.routing.resolver import Route


def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    """An empty list allows everything; otherwise the requested name must match one pattern.

    A pattern without a provider (``gpt-4o*``) also matches that model at any provider
    (``openai/gpt-4o-mini``, ``azure/gpt-4o``); ``openai/*`` matches only that provider.
    """
    if not patterns:
        return True
    _, sep, bare = model.partition("/")
    for p in patterns:
        if p == model or fnmatchcase(model, p):
            return True
        if sep and "/" not in p and (p == bare or fnmatchcase(bare, p)):
            return True
    return False


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
