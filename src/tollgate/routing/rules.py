"""Routing rules and data residency: compiled once per config into predicates, applied to a route per request.

A rule's ``match`` becomes a tuple of small closures over ``RequestFacts`` (headers, caller, tags, prompt
size, tools, images, and the caller's remaining budget as last seen in this process's ``BudgetLevels``: a
dict lookup, not a store call); its ``action`` retargets the request to another logical model and/or
restricts the candidates (deployments, tags, providers, regions, residency). Every matching rule applies, in
order, until one marked ``last``; restrictions add up (a deployment must pass all of them), and the first
rule naming a model picks it. Residency zones come from the request's tags, the caller's metadata and
rules; with several, a deployment must comply with each. A restricted route is built once per distinct
outcome and cached, so the per-request cost is the predicates plus one dict lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from tollgate.config.routing_rules import Accepted, BudgetRemaining, ResidencyConfig, RuleConfig
from tollgate.context import Principal
from tollgate.errors import ServiceUnavailableError
from tollgate.routing.budget_levels import BudgetLevels, Spent
from tollgate.routing.resolver import Exclusion, Route
from tollgate.routing.strategies import Candidate
from tollgate.types import JSONObject, JSONValue

TAGS_HEADER = b"x-tollgate-tags"
GATEWAY_PREFIX = "tollgate_"  # metadata keys meant for the gateway only (see providers/openai/adapter.py)
NO_COMPLIANT = "no_compliant_deployment"
_EMPTY: Mapping[str, str] = MappingProxyType({})
_MAX_CACHED = 10_000
MICROS_PER_USD = 1_000_000


class RequestFacts:
    """What rules may look at, read lazily: most requests only touch the few facts their rules name."""

    __slots__ = ("_tags", "body", "headers", "levels", "metadata", "principal", "prompt_tokens", "stream")

    def __init__(
        self,
        headers: Mapping[bytes, bytes],
        principal: Principal | None = None,
        metadata: JSONObject | None = None,
        prompt_tokens: int = 0,
        stream: bool = False,
        body: JSONObject | None = None,
        levels: BudgetLevels | None = None,
    ) -> None:
        self.headers = headers
        self.levels = levels  # budget levels last seen by this process (budget_remaining conditions)
        self.principal = principal
        self.metadata = metadata  # the request body's "metadata" object
        self.prompt_tokens = prompt_tokens
        self.stream = stream
        self.body = body
        self._tags: Mapping[str, str] | None = None

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1").strip().lower()

    @property
    def tags(self) -> Mapping[str, str]:
        """The request's tags, lower-cased: its ``metadata`` strings, then ``x-tollgate-tags: k=v, k2=v2``."""
        tags = self._tags
        if tags is None:
            found: dict[str, str] = {}
            if self.metadata:
                for k, v in self.metadata.items():
                    if isinstance(v, str):
                        # tollgate_<tag> names the same tag, and the provider adapters never forward it.
                        found[k.strip().lower().removeprefix(GATEWAY_PREFIX)] = v.strip().lower()
            raw = self.headers.get(TAGS_HEADER)
            if raw:
                for part in raw.decode("latin-1").split(","):
                    k, sep, v = part.partition("=")
                    if k.strip():
                        found[k.strip().lower()] = v.strip().lower() if sep else "true"
            tags = self._tags = found or _EMPTY
        return tags

    def caller(self, key: str) -> str | None:
        principal = self.principal
        value = principal.metadata.get(key) if principal is not None else None
        return value.strip().lower() if isinstance(value, str) else None

    def caller_any_case(self, key: str) -> str | None:
        """``caller(key)``, also when the metadata spells the key in another case (``key`` is lower case)."""
        found = self.caller(key)
        if found is None and self.principal is not None:
            for name, value in self.principal.metadata.items():
                if name.lower() == key and isinstance(value, str):
                    return value.strip().lower()
        return found

    def budget_left(self, scope: str) -> list[tuple[int, int, Spent | None, str]]:
        """The caller's budgets of ``scope``: (micro-dollars left, limit, level seen or None, period) each."""
        principal = self.principal
        if principal is None or not principal.budgets:
            return []
        levels = self.levels
        out: list[tuple[int, int, Spent | None, str]] = []
        for budget in principal.budgets:
            if budget.scope != scope:
                continue
            limit = math.floor(budget.limit_usd * MICROS_PER_USD + 1e-6)
            spent = levels.level(scope, budget.scope_id, budget.period) if levels is not None else None
            out.append((limit - spent.used if spent is not None else limit, limit, spent, budget.period))
        return out

    @property
    def has_tools(self) -> bool:
        body = self.body
        return bool(body and (body.get("tools") or body.get("functions")))

    @property
    def has_images(self) -> bool:
        messages = self.body.get("messages") if self.body else None
        if not isinstance(messages, list):
            return False
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list) and any(_is_image(part) for part in content):
                return True
        return False


def _is_image(part: JSONValue) -> bool:
    # OpenAI: {"type": "image_url"}; Anthropic: {"type": "image"}; Responses-style: {"type": "input_image"}.
    return isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image")


Predicate = Callable[[RequestFacts], bool]
Probe = Callable[[RequestFacts], JSONObject]  # what a condition saw, for /v1/route/explain


def _values(accepted: Accepted) -> frozenset[str] | None:
    """Accepted values, lower-cased; None when any value is accepted ('*')."""
    items = [accepted] if isinstance(accepted, str) else accepted
    values = frozenset(v.strip().lower() for v in items)
    return None if "*" in values else values


def _accepts(values: frozenset[str] | None, value: str | None) -> bool:
    return value is not None and (values is None or value in values)


def _show(values: frozenset[str] | None) -> str:
    return "any value" if values is None else " or ".join(sorted(values))


def _header_is(name: bytes, values: frozenset[str] | None) -> Predicate:
    if values is None:
        return lambda f: name in f.headers
    # Compared as bytes: no decoding per request (header values are latin-1 on the wire).
    accepted = frozenset(v.encode("latin-1") for v in values)

    def holds(f: RequestFacts) -> bool:
        value = f.headers.get(name)
        return value is not None and value.strip().lower() in accepted

    return holds


def _all_of(predicates: Sequence[Predicate]) -> Predicate:
    """One predicate for a rule's conditions (the common short cases without a loop)."""
    if not predicates:
        return lambda f: True
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda f: first(f) and second(f)

    def every(f: RequestFacts) -> bool:
        for predicate in predicates:  # noqa: SIM110 (a plain loop: all() over a generator costs more)
            if not predicate(f):
                return False
        return True

    return every


def _caller_is(key: str, values: frozenset[str] | None) -> Predicate:
    return lambda f: _accepts(values, f.caller(key))


def _tag_is(key: str, values: frozenset[str] | None) -> Predicate:
    return lambda f: _accepts(values, f.tags.get(key))


def _compile_match(rule: RuleConfig) -> tuple[tuple[Predicate, str], ...]:
    """The rule's conditions as (predicate, description) pairs, cheapest first."""
    m = rule.match
    out: list[tuple[Predicate, str]] = []
    if m.stream is not None:
        want_stream = m.stream
        out.append((lambda f: f.stream is want_stream, f"stream is {str(want_stream).lower()}"))
    if m.min_prompt_tokens is not None:
        low = m.min_prompt_tokens
        out.append((lambda f: f.prompt_tokens >= low, f"estimated prompt tokens >= {low}"))
    if m.max_prompt_tokens is not None:
        high = m.max_prompt_tokens
        out.append((lambda f: f.prompt_tokens <= high, f"estimated prompt tokens <= {high}"))
    if m.teams:
        teams = frozenset(m.teams)
        out.append((lambda f: f.principal is not None and f.principal.team_id in teams, f"team in {sorted(teams)}"))
    if m.orgs:
        orgs = frozenset(m.orgs)
        out.append((lambda f: f.principal is not None and f.principal.org_id in orgs, f"org in {sorted(orgs)}"))
    for name, accepted in m.headers.items():
        header, values = name.strip().lower().encode("latin-1"), _values(accepted)
        out.append((_header_is(header, values), f"header {name.lower()}: {_show(values)}"))
    for key, accepted in m.principal.items():
        values = _values(accepted)
        out.append((_caller_is(key, values), f"caller metadata {key}: {_show(values)}"))
    for key, accepted in m.tags.items():
        tag, values = key.strip().lower(), _values(accepted)
        out.append((_tag_is(tag, values), f"request tag {tag}: {_show(values)}"))
    if m.has_tools is not None:
        want_tools = m.has_tools
        out.append((lambda f: f.has_tools is want_tools, f"has tools is {str(want_tools).lower()}"))
    if m.has_images is not None:
        want_images = m.has_images
        out.append((lambda f: f.has_images is want_images, f"has images is {str(want_images).lower()}"))
    if m.budget_remaining is not None:  # last: the dearest (a dict lookup per budget of the scope)
        out.append(_budget_condition(m.budget_remaining)[:2])
    return tuple(out)


def _dollars(micros: float) -> str:
    return f"${micros / MICROS_PER_USD:,.2f}" if micros >= 10_000 else f"${micros / MICROS_PER_USD:.6f}"


def _budget_condition(cond: BudgetRemaining) -> tuple[Predicate, str, Probe]:
    """``budget_remaining``: the caller's budget of a scope has less left than the threshold (as last seen here).

    Any budget of the scope below the threshold makes it hold (a team with a daily and a monthly budget is
    "low" when either is); budgets this replica has not seen this period are left out; when none of them is
    known (or the caller has no budget of the scope), the outcome is ``if_unknown``."""
    scope = cond.scope
    unknown = cond.if_unknown
    if cond.below_usd is not None:
        threshold = math.floor(cond.below_usd * MICROS_PER_USD + 1e-6)
        what = f"{scope} budget remaining below {_dollars(threshold)}"

        def below(left: int, limit: int) -> bool:
            return left < threshold

    else:
        fraction = cond.below_fraction or 0.0
        what = f"{scope} budget remaining below {fraction * 100:g}% of its limit"

        def below(left: int, limit: int) -> bool:
            return left < fraction * limit

    def holds(f: RequestFacts) -> bool:
        known = False
        for left, limit, spent, _ in f.budget_left(scope):
            if spent is not None:
                if below(left, limit):
                    return True
                known = True
        return False if known else unknown

    def probe(f: RequestFacts) -> JSONObject:
        now = f.levels.now() if f.levels is not None else 0.0
        seen: list[JSONValue] = []
        for left, limit, spent, period in f.budget_left(scope):
            item: JSONObject = {"period": period, "limit_usd": limit / MICROS_PER_USD}
            if spent is None:
                item["remaining_usd"] = None
                item["level"] = "unknown: this replica has not reserved on this budget in the current period"
            else:
                item["remaining_usd"] = round(left / MICROS_PER_USD, 6)
                item["seen_seconds_ago"] = round(max(0.0, now - spent.at), 3)
                item["below"] = below(left, limit)
            seen.append(item)
        result = holds(f)
        out: JSONObject = {"condition": what, "holds": result, "budgets": seen}
        if not any(isinstance(item, dict) and "below" in item for item in seen):
            out["unknown"] = True
            out["note"] = (
                f"no known level of a {scope} budget of the caller: "
                f"the condition takes if_unknown ({str(unknown).lower()})"
            )
        return out

    return holds, what, probe


def _compile_probes(rule: RuleConfig) -> tuple[Probe, ...]:
    m = rule.match
    return (_budget_condition(m.budget_remaining)[2],) if m.budget_remaining is not None else ()


@dataclass(frozen=True, slots=True)
class Restriction:
    """One rule's filter on candidates (None: that dimension is not restricted)."""

    rule: str
    deployments: frozenset[str] | None = None
    tags: frozenset[str] = frozenset()
    providers: frozenset[str] | None = None
    regions: frozenset[str] | None = None

    def refuses(self, cand: Candidate) -> str | None:
        """Why ``cand`` fails this filter, or None."""
        if self.deployments is not None and cand.key not in self.deployments:
            return f"rule '{self.rule}' allows only deployments {sorted(self.deployments)}"
        if self.providers is not None and cand.deployment.provider not in self.providers:
            return f"rule '{self.rule}' allows only providers {sorted(self.providers)}"
        if self.regions is not None and (cand.region or "").lower() not in self.regions:
            return f"rule '{self.rule}' allows only regions {sorted(self.regions)} (region: {cand.region or 'none'})"
        missing = self.tags.difference(cand.tags)
        if missing:
            return f"rule '{self.rule}' needs tags {sorted(self.tags)} (missing: {sorted(missing)})"
        return None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    models: frozenset[str] | None
    conditions: tuple[tuple[Predicate, str], ...]
    holds: Predicate  # every condition at once
    target: str | None
    restriction: Restriction | None
    residency: str | None
    last: bool
    probes: tuple[Probe, ...] = ()  # conditions whose observed values explain reports (budget levels)

    def first_failure(self, requested: str, facts: RequestFacts) -> str | None:
        """The first condition that does not hold, or None when the rule matches."""
        if self.models is not None and requested not in self.models:
            return f"model {requested!r} is not in {sorted(self.models)}"
        for predicate, what in self.conditions:
            if not predicate(facts):
                return what
        return None


def compile_rule(rule: RuleConfig) -> CompiledRule:
    a = rule.action
    restricted = a.deployments or a.tags or a.providers or a.regions
    restriction = (
        Restriction(
            rule.name,
            deployments=frozenset(a.deployments) or None,
            tags=frozenset(a.tags),
            providers=frozenset(a.providers) or None,
            regions=frozenset(r.lower() for r in a.regions) or None,
        )
        if restricted
        else None
    )
    conditions = _compile_match(rule)
    return CompiledRule(
        name=rule.name,
        models=frozenset(rule.match.models) or None,
        conditions=conditions,
        holds=_all_of([predicate for predicate, _ in conditions]),
        target=a.model,
        restriction=restriction,
        residency=a.residency.strip().lower() if a.residency else None,
        last=rule.last,
        probes=_compile_probes(rule),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules and residency decided for one request (hashable: it keys the route cache)."""

    matched: tuple[str, ...] = ()
    target: str | None = None
    restrictions: tuple[Restriction, ...] = ()
    zones: tuple[str, ...] = ()  # residency zones, sorted


_NOTHING = Decision()


class RouteRules:
    """The compiled rules and residency settings of one config version."""

    def __init__(
        self, rules: Sequence[RuleConfig], residency: ResidencyConfig, resolve: Callable[[str], Route]
    ) -> None:
        self.rules = tuple(compile_rule(r) for r in rules)
        self.tag = residency.tag.strip().lower()
        self._regions = {
            zone.lower(): frozenset(r.lower() for r in regions) for zone, regions in residency.zones.items()
        }
        self._resolve = resolve
        self._by_name = {rule.name: rule for rule in self.rules}
        self._cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Route] = {}

    def apply(self, route: Route, facts: RequestFacts) -> Route:
        """The route this request may use: ``route`` itself when no rule and no residency applies."""
        matched, zones = self._match(route.requested, facts)
        if not matched and not zones:
            return route
        # Rule names are unique and rules are fixed per config: the names and zones determine the outcome.
        key = (route.requested, matched, zones)
        shaped = self._cache.get(key)
        if shaped is None:
            shaped = self.shape(route, self._decision(matched, zones))
            if len(self._cache) < _MAX_CACHED:
                self._cache[key] = shaped
        return shaped

    def decide(self, requested: str, facts: RequestFacts) -> Decision:
        matched, zones = self._match(requested, facts)
        return self._decision(matched, zones) if matched or zones else _NOTHING

    def _match(self, requested: str, facts: RequestFacts) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The names of the matching rules, and the residency zones (sorted): the hot path."""
        matched: list[str] = []
        zones = self._zones_of(facts)
        for rule in self.rules:
            if (rule.models is None or requested in rule.models) and rule.holds(facts):
                matched.append(rule.name)
                if rule.residency is not None and rule.residency not in zones:
                    zones = tuple(sorted((*zones, rule.residency)))
                if rule.last:
                    break
        return tuple(matched), zones

    def _decision(self, matched: tuple[str, ...], zones: tuple[str, ...]) -> Decision:
        target: str | None = None
        restrictions: list[Restriction] = []
        for name in matched:
            rule = self._by_name[name]
            if target is None:
                target = rule.target
            if rule.restriction is not None:
                restrictions.append(rule.restriction)
        return Decision(matched, target, tuple(restrictions), zones)

    def _zones_of(self, facts: RequestFacts) -> tuple[str, ...]:
        """Residency zones named by the request's tags and by the caller's metadata (both apply)."""
        tag = self.tag
        # The full tag parse (keys case-insensitive, tollgate_ prefix, header over body) whenever there are
        # tags at all: a pin must not be missed because of how its key was spelled.
        from_request = facts.tags.get(tag) if facts.metadata or TAGS_HEADER in facts.headers else None
        from_caller = facts.caller_any_case(tag) if facts.principal is not None and facts.principal.metadata else None
        if from_request is None:
            return () if from_caller is None else (from_caller,)
        if from_caller is None or from_caller == from_request:
            return (from_request,)
        return (from_request, from_caller) if from_request < from_caller else (from_caller, from_request)

    def allowed_regions(self, zone: str) -> frozenset[str]:
        return self._regions.get(zone, frozenset((zone,)))

    def shape(self, route: Route, decision: Decision) -> Route:
        """``route`` (or the rule's target) with the decision's restrictions and residency applied."""
        base = self._resolve(decision.target) if decision.target is not None else route
        kept: list[Candidate] = []
        excluded: list[Exclusion] = []
        for cand in base.plan:
            refusal = self._refuses(cand, decision)
            if refusal is None:
                kept.append(cand)
            else:
                excluded.append(Exclusion(cand, *refusal))
        return Route(
            requested=route.requested,
            candidates=tuple(c.deployment for c in kept),
            logical=base.logical,
            strategy=base.strategy,
            plan=tuple(kept),
            target=decision.target,
            rules=decision.matched,
            excluded=tuple(excluded),
            residency=decision.zones,
            split=base.split,
            fallback_on=base.fallback_on,
        )

    def _refuses(self, cand: Candidate, decision: Decision) -> tuple[Literal["rule", "residency"], str] | None:
        region = (cand.region or "").lower()
        for zone in decision.zones:
            allowed = self.allowed_regions(zone)
            if region not in allowed:
                return "residency", (
                    f"data residency '{zone}' allows regions {sorted(allowed)}; "
                    f"this deployment's region is {cand.region or 'not set'}"
                )
        for restriction in decision.restrictions:
            reason = restriction.refuses(cand)
            if reason is not None:
                return "rule", reason
        return None

    def trace(self, requested: str, facts: RequestFacts) -> list[JSONValue]:
        """Every rule in order: whether it matched, and if not, the first condition that failed (for explain)."""
        out: list[JSONValue] = []
        stopped: str | None = None
        for rule in self.rules:
            if stopped is not None:
                out.append({"rule": rule.name, "matched": False, "why": f"not evaluated: rule '{stopped}' is last"})
                continue
            failure = rule.first_failure(requested, facts)
            conditions: list[JSONValue] = [what for _, what in rule.conditions]
            entry: JSONObject = {"rule": rule.name, "matched": failure is None, "conditions": conditions}
            if rule.probes:
                observed: list[JSONValue] = [probe(facts) for probe in rule.probes]
                entry["observed"] = observed
            if failure is None:
                entry["why"] = "every condition holds"
                if rule.last:
                    stopped = rule.name
            else:
                entry["why"] = f"does not hold: {failure}"
            out.append(entry)
        return out


def no_compliant_error(
    route: Route, detail: str | None = None, headers: dict[str, str] | None = None
) -> ServiceUnavailableError:
    """The 503 for a request whose rules or residency leave no deployment that can answer it."""
    pinned = f" allowed for data residency {', '.join(route.residency)}" if route.residency else ""
    rules = f" (rules matched: {', '.join(route.rules)})" if route.rules else ""
    excluded = "; ".join(f"{e.candidate.key}: {e.reason}" for e in route.excluded)
    parts = [f"No deployment of model '{route.requested}'{pinned} can answer this request{rules}."]
    if detail:
        parts.append(detail)
    if excluded:
        parts.append(f"Not used: {excluded}.")
    return ServiceUnavailableError(" ".join(parts), code=NO_COMPLIANT, headers=headers)
