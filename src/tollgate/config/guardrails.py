"""Config of the guardrails (the ``guardrails`` section): which PII and secret types are detected and what is done."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
]
ENTITY_TYPES: tuple[EntityType, ...] = get_args(EntityType)

Action = Literal["mask", "redact", "hash", "block", "allow"]


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
        "GITHUB_TOKEN, JWT, PRIVATE_KEY, PASSWORD), overriding `default_action`.",
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

    @field_validator("phone_regions")
    @classmethod
    def _upper_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(r.upper() for r in value)

    def action_for(self, entity: EntityType) -> Action:
        return self.actions.get(entity, self.default_action)


InjectionAction = Literal["block", "flag"]


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
        "the request through, add the response header x-tollgate-guardrail: flagged and record the decision.",
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


class CodeGuardConfig(BaseModel):
    """Code, SQL and shell injection and dangerous commands in user messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Screen user messages for SQL/shell/code injection payloads and destructive commands."
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Score (0-1) from which a message is acted on.")
    action: InjectionAction = Field(
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


class GuardrailsConfig(BaseModel):
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
