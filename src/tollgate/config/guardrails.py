"""Config of the guardrails (the ``guardrails`` section): which PII and secret types are detected and what is done."""

from __future__ import annotations

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


class GuardrailsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pii: PIIGuardConfig = Field(
        default_factory=PIIGuardConfig, description="PII and secrets detection on requests (INSPECT phase)."
    )
