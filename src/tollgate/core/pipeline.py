"""The policies a request runs through, per phase, and which guardrail profile's pipeline a caller gets.

A ``Pipeline`` is one complete ordering of policies (core/assembly.py composes it): the gateway-wide ones
(allow-list, prices, limits and budgets, ledger, shadow traffic, metrics) and the guards of one guardrail
profile. ``Pipelines`` holds one per profile and picks a caller's at AUTHENTICATE: the profile assigned to its
key, else its team's, else its org's, else ``default``. The request keeps that pipeline to the end, also when a
reload installs new ones meanwhile, since a guard's per-request state (the PII mapping) lives in its instance.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from tollgate.config.guardrails import DEFAULT_PROFILE, GuardrailAssignConfig
from tollgate.context import Principal
from tollgate.core.phases import (
    AdmitPolicy,
    FinalizePolicy,
    InspectPolicy,
    RespondPolicy,
    ReviewPolicy,
    StreamFilterFactory,
)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The policies of one guardrail profile, in phase order."""

    profile: str = DEFAULT_PROFILE
    admit: tuple[AdmitPolicy, ...] = ()
    inspect: tuple[InspectPolicy, ...] = ()
    respond: tuple[RespondPolicy, ...] = ()
    review: tuple[ReviewPolicy, ...] = ()  # async output policies (external services), after ``respond``
    # Per-request stream filters run on canonical chunks; while none is active, streams whose format
    # matches the client's are relayed as the provider's own bytes.
    stream_filters: tuple[StreamFilterFactory, ...] = ()
    finalize: tuple[FinalizePolicy, ...] = ()
    # What its guards hold open (a webhook's HTTP session), closed once no request can use them.
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()
    # The guards in the order they run, with their phase, for GET /admin/guardrails/profiles.
    guards: tuple[tuple[str, str], ...] = field(default=())

    @property
    def screens_output(self) -> bool:
        """Whether non-streamed answers are screened (then they are read, never relayed as the provider's bytes)."""
        return bool(self.review) or any(not getattr(p, "observer", False) for p in self.respond)


class Pipelines:
    """One pipeline per guardrail profile and who gets which (``guardrails.assign``)."""

    __slots__ = ("_assigned", "assign", "by_profile", "default")

    def __init__(
        self,
        default: Pipeline,
        profiles: Mapping[str, Pipeline] | None = None,
        assign: GuardrailAssignConfig | None = None,
    ) -> None:
        self.default = default
        self.by_profile: dict[str, Pipeline] = {DEFAULT_PROFILE: default, **(profiles or {})}
        self.assign = assign or GuardrailAssignConfig()
        self._assigned = bool(self.assign.keys or self.assign.teams or self.assign.orgs)

    def select(self, principal: Principal) -> Pipeline:
        """The caller's pipeline: its key's profile, else its team's, else its org's, else the default."""
        if not self._assigned:
            return self.default
        name, _, _ = self.assign.decide(principal.key_id, principal.team_id, principal.org_id)
        return self.by_profile[name]

    def with_default(self, **changes: object) -> Pipelines:
        """These pipelines with some phases of the default one replaced (tests add or swap a policy this way)."""
        default = replace(self.default, **changes)  # type: ignore[arg-type]
        profiles = {name: p for name, p in self.by_profile.items() if name != DEFAULT_PROFILE}
        return Pipelines(default, profiles, self.assign)

    def closers(self) -> list[Callable[[], Awaitable[None]]]:
        return [close for pipeline in self.by_profile.values() for close in pipeline.closers]
