"""ADMIT: a caller may use only models that every level (key, user, team, org) allows (names or ``*`` patterns)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tollgate.context import RequestContext
from tollgate.errors import PermissionDeniedError
from tollgate.routing.resolver import Route

# Joins the patterns of one alternative that must all match (one per level); never valid in a model name.
ALL_OF = "&"
_WILDCARDS = frozenset("*?[")


def _pattern_allows(pattern: str, model: str, bare: str | None) -> bool:
    if pattern == model or fnmatchcase(model, pattern):
        return True
    return bare is not None and "/" not in pattern and (pattern == bare or fnmatchcase(bare, pattern))


def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    """An empty list allows everything; otherwise the requested name must match one entry.

    A pattern without a provider (``gpt-4o*``) also matches that model at any provider
    (``openai/gpt-4o-mini``, ``azure/gpt-4o``); ``openai/*`` matches only that provider.
    An entry ``a&b`` (built by ``intersect_allow_lists``) matches when both ``a`` and ``b`` do.
    """
    if not patterns:
        return True
    _, sep, rest = model.partition("/")
    bare = rest if sep else None
    for entry in patterns:
        if ALL_OF in entry:
            if all(_pattern_allows(p, model, bare) for p in entry.split(ALL_OF)):
                return True
        elif _pattern_allows(entry, model, bare):
            return True
    return False


def _both(a: str, b: str) -> str:
    """One alternative allowing what ``a`` and ``b`` both allow, simplified only where that is exact."""
    if a == b or b == "*":
        return a
    if a == "*":
        return b
    # A fully qualified exact name (provider/model) is a single model: it is either in b or nowhere.
    if "/" in a and not _WILDCARDS & set(a) and ALL_OF not in a and _pattern_allows(b, a, a.partition("/")[2]):
        return a
    if "/" in b and not _WILDCARDS & set(b) and ALL_OF not in b and _pattern_allows(a, b, b.partition("/")[2]):
        return b
    return a + ALL_OF + b


def intersect_allow_lists(*lists: tuple[str, ...]) -> tuple[str, ...]:
    """The allow-list a request must pass when each level has its own (an empty list means "no restriction").

    (a1 | a2) & (b1 | b2) = (a1&b1) | (a1&b2) | ...: every level's list is checked, since two glob
    patterns rarely have a glob as their intersection. The result is empty only when no level restricts.
    """
    result: tuple[str, ...] = ()
    for level in lists:
        if not level:
            continue
        if not result:
            result = tuple(dict.fromkeys(level))
            continue
        result = tuple(dict.fromkeys(_both(a, b) for a in result for b in level))
    return result


class ModelAccessPolicy:
    async def admit(self, ctx: RequestContext, route: Route) -> None:
        principal = ctx.principal
        if principal is None or not principal.allowed_models:
            return
        if model_allowed(principal.allowed_models, route.requested):
            return
        raise PermissionDeniedError(
            f"Your API key is not allowed to use the model '{route.requested}' (the allow-lists of the key, "
            "its user, team and organization must all permit it). Call GET /v1/models to see the models you can use.",
            param="model",
            code="model_not_allowed",
        )
