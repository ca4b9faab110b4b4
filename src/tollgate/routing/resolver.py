"""Resolve a requested model name to candidate deployments: logical models, ``provider/model``, then the catalog."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tollgate.config.catalog import provider_type_for
from tollgate.errors import ModelNotFoundError
from tollgate.providers.base import Deployment
from tollgate.routing.split import Split
from tollgate.routing.strategies import Candidate, Strategy

_SEE = "Call GET /v1/models to see the models you can use."

# For a bare catalog name whose provider is not configured: which variable would enable it.
_ENABLE_HINT = {
    "openai": "set OPENAI_API_KEY",
    "anthropic": "set ANTHROPIC_API_KEY",
    "gemini": "set GEMINI_API_KEY",
}


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A candidate a routing rule or data residency removed from a route, and why."""

    candidate: Candidate
    by: Literal["rule", "residency"]
    reason: str


@dataclass(frozen=True, slots=True)
class Route:
    """The outcome of resolution: what was asked, and where it may go, in order of preference."""

    requested: str
    candidates: tuple[Deployment, ...]
    logical: bool  # a configured logical model (alias) rather than a direct provider/model address
    strategy: Strategy = "priority"
    # The candidates with their routing attributes (weight, tier, limits, prices); one per candidate.
    plan: tuple[Candidate, ...] = field(default=())
    # Set when routing rules or data residency shaped this route (routing/rules.py):
    target: str | None = None  # the logical model a rule sent the request to
    rules: tuple[str, ...] = ()  # the names of the rules that matched, in order
    excluded: tuple[Exclusion, ...] = ()  # candidates removed before the strategy ran
    residency: tuple[str, ...] = ()  # the data-residency zones the request is pinned to
    split: Split | None = None  # a traffic split (A/B) between the deployments (routing/split.py)
    # Refusals (``context_window``, ``content_policy``) that move on to the next deployment (models.<name>.fallback_on)
    fallback_on: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if len(self.plan) != len(self.candidates):
            object.__setattr__(self, "plan", tuple(Candidate(d, i) for i, d in enumerate(self.candidates)))


class ModelResolver:
    """Pure lookup over one config snapshot; builds nothing per request except a rare direct Deployment."""

    def __init__(
        self,
        logical: Mapping[str, tuple[Deployment, ...]],
        providers: Mapping[str, str],
        make_deployment: Callable[[str, str], Deployment],
        plans: Mapping[str, tuple[Strategy, tuple[Candidate, ...]]] | None = None,
        splits: Mapping[str, Split] | None = None,
        fallbacks: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self._logical = {
            name: Route(
                name,
                deps,
                True,
                *(plans[name] if plans and name in plans else ("priority", ())),
                split=splits.get(name) if splits else None,
                fallback_on=fallbacks.get(name, frozenset()) if fallbacks else frozenset(),
            )
            for name, deps in logical.items()
        }
        self._providers = dict(providers)  # name -> type
        self._make = make_deployment
        self._direct: dict[str, Route] = {}
        self._by_type: dict[str, str] = {}
        for name, ptype in self._providers.items():
            # The provider named like its type wins (e.g. "openai"), else the first declared of that type.
            if name == ptype or ptype not in self._by_type:
                self._by_type[ptype] = name

    def resolve(self, model: str) -> Route:
        found = self._logical.get(model)
        if found is not None:
            return found
        cached = self._direct.get(model)
        if cached is not None:
            return cached
        route = self._resolve_direct(model)
        if len(self._direct) < 10_000:  # bounded: model names come from clients
            self._direct[model] = route
        return route

    def _resolve_direct(self, model: str) -> Route:
        provider, sep, upstream = model.partition("/")
        if sep and provider in self._providers:
            if not upstream:
                raise ModelNotFoundError(
                    f"The model '{model}' names provider '{provider}' but no model. {_SEE}", param="model"
                )
            return Route(model, (self._make(provider, upstream),), False)
        ptype = provider_type_for(model)
        if ptype is not None:
            name = self._by_type.get(ptype)
            if name is not None:
                return Route(model, (self._make(name, model),), False)
            hint = _ENABLE_HINT.get(ptype, f"configure a provider of type '{ptype}'")
            raise ModelNotFoundError(
                f"The model '{model}' is served by {ptype}, but no {ptype} provider is configured ({hint}). {_SEE}",
                param="model",
            )
        if sep:
            raise ModelNotFoundError(
                f"The model '{model}' does not exist: no provider named '{provider}' is configured "
                f"(configured: {', '.join(sorted(self._providers))}). {_SEE}",
                param="model",
            )
        raise ModelNotFoundError(
            f"The model '{model}' does not exist or you do not have access to it. {_SEE}", param="model"
        )

    @property
    def logical_names(self) -> list[str]:
        return list(self._logical)
