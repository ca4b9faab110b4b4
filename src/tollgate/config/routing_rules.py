"""Config of routing rules and data residency (``routing.rules``, ``routing.residency``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A header, tag or metadata condition: one accepted value, a list of them, or "*" for "present at all".
Accepted = str | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetRemaining(_Strict):
    scope: Literal["key", "user", "team", "org"] = Field(
        description="Whose budget: the caller's key, user, team or org (every period of that scope counts)."
    )
    below_usd: float | None = Field(
        None, ge=0, description="Holds when less than this many USD are left of a budget of the scope."
    )
    below_fraction: float | None = Field(
        None, ge=0, le=1, description="Holds when less than this share of a budget of the scope is left (0.1: 10 %)."
    )
    if_unknown: bool = Field(
        False,
        description="The outcome when this replica has not seen the budget's level yet this period (its first "
        "request), or the caller has no budget of the scope: false (default) does not match.",
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> BudgetRemaining:
        if (self.below_usd is None) == (self.below_fraction is None):
            raise ValueError("budget_remaining needs exactly one of below_usd, below_fraction")
        return self


class RuleMatch(_Strict):
    models: list[str] = Field(
        default_factory=list,
        description="Requested model names (logical or provider/model) the rule applies to; empty: every model.",
    )
    headers: dict[str, Accepted] = Field(
        default_factory=dict,
        description="Request headers and their accepted values (names and values compared case-insensitively; "
        "'*' accepts any value of a present header).",
    )
    tags: dict[str, Accepted] = Field(
        default_factory=dict,
        description="Request tags and their accepted values: the request's 'metadata' object and the "
        "'x-tollgate-tags: k=v, k2=v2' header (the header wins on a clash).",
    )
    principal: dict[str, Accepted] = Field(
        default_factory=dict,
        description="Metadata of the caller's key, user, team and org (merged; the key's own wins) and their "
        "accepted values.",
    )
    teams: list[str] = Field(default_factory=list, description="Team ids; the caller must belong to one of them.")
    orgs: list[str] = Field(default_factory=list, description="Org ids; the caller must belong to one of them.")
    min_prompt_tokens: int | None = Field(
        None, ge=0, description="The request's estimated prompt tokens (about 4 bytes of body per token) at least this."
    )
    max_prompt_tokens: int | None = Field(None, ge=0, description="The request's estimated prompt tokens at most this.")
    has_tools: bool | None = Field(None, description="true: the request offers tools; false: it offers none.")
    has_images: bool | None = Field(None, description="true: a message carries an image; false: none does.")
    stream: bool | None = Field(None, description="true: streaming requests only; false: non-streaming only.")
    budget_remaining: BudgetRemaining | None = Field(
        None,
        description="The caller's remaining budget of a scope is below a threshold, as last seen by this "
        "replica (no store round trip; see docs/routing.md).",
    )


class RuleAction(_Strict):
    model: str | None = Field(
        None,
        description="Send the request to this logical model (a name under 'models') instead of the one asked for. "
        "The first matching rule that names a model picks it.",
    )
    deployments: list[str] = Field(
        default_factory=list, description="Only these deployments of the route ('provider/model') may be used."
    )
    tags: list[str] = Field(
        default_factory=list, description="Only deployments carrying every one of these tags may be used."
    )
    providers: list[str] = Field(
        default_factory=list, description="Only deployments of these providers (configured names) may be used."
    )
    regions: list[str] = Field(default_factory=list, description="Only deployments in these regions may be used.")
    residency: str | None = Field(
        None,
        description="Pin the request to a data-residency zone (e.g. 'eu'), exactly as if it carried the residency "
        "tag: only compliant deployments are ever called, and none healthy is a 503 no_compliant_deployment.",
    )

    @model_validator(mode="after")
    def _does_something(self) -> RuleAction:
        if not (self.model or self.deployments or self.tags or self.providers or self.regions or self.residency):
            raise ValueError(
                "a rule's action must set at least one of model, deployments, tags, providers, regions, residency"
            )
        return self


class RuleConfig(_Strict):
    name: str = Field(min_length=1, description="Names the rule in /v1/route/explain, errors and logs.")
    match: RuleMatch = Field(
        default_factory=RuleMatch, description="Conditions, all of which must hold; empty: every request."
    )
    action: RuleAction = Field(description="What a matching rule does to the route.")
    last: bool = Field(False, description="When this rule matches, evaluate no further rules.")


class ResidencyConfig(_Strict):
    tag: str = Field(
        "data-residency",
        min_length=1,
        description="The request tag (metadata, x-tollgate-tags) and caller metadata key that names a residency zone.",
    )
    zones: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Residency zone -> the deployment regions that comply with it (e.g. eu: [eu, eu-west-1]). A "
        "zone not listed is complied with by deployments whose region is the zone's own name only.",
    )


def rule_problems(rules: Iterable[RuleConfig], models: Iterable[str]) -> list[str]:
    """Rules that name a logical model that does not exist, or share a name."""
    known = set(models)
    problems: list[str] = []
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.action.model is not None and rule.action.model not in known:
            problems.append(
                f"routing.rules[{i}].action.model: unknown logical model {rule.action.model!r} "
                f"(configured: {', '.join(sorted(known)) or 'none'})"
            )
        if rule.name in seen:
            problems.append(f"routing.rules[{i}].name: {rule.name!r} is used by another rule")
        seen.add(rule.name)
    return problems
