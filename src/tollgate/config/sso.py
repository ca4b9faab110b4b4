"""The ``sso:`` section: OpenID Connect single sign-on for the admin web UI (static settings, read at start)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# A sign-out is remembered (in the audit log) as long as the session it ends could live; audit retention is
# at least a day, so a session must not outlive it.
MAX_SESSION_SECONDS = 24 * 3600


class SsoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Offer 'Sign in with SSO' on the admin UI (docs/ui.md#single-sign-on).")
    issuer: str | None = Field(
        None,
        description="The OpenID provider's issuer URL, exactly as its discovery document and ID tokens name it "
        "(its /.well-known/openid-configuration is read from there).",
    )
    client_id: str | None = Field(None, description="The client id registered at the provider for this gateway.")
    client_secret: str | None = Field(
        None,
        description="The client secret (use ${VAR}, ${file:...} or ${vault:...}); leave it out for a public "
        "client, which PKCE protects.",
    )
    redirect_url: str | None = Field(
        None,
        description="The URL the provider sends the browser back to: this gateway's public address followed by "
        "/auth/sso/callback. Register the same URL at the provider.",
    )
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="Email domains that may sign in (required): the ID token's email must be in one of them, "
        "exactly (no subdomains), and email_verified must be true.",
    )
    role: Literal["viewer", "admin"] = Field(
        "viewer", description="The console role of everyone who signs in, unless admin_groups grants admin."
    )
    groups_claim: str = Field("groups", description="The ID token claim that lists the user's groups.")
    admin_groups: list[str] = Field(
        default_factory=list, description="Members of any of these groups (in groups_claim) get the admin role."
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"],
        description="Scopes asked for; add the one that puts groups in the ID token if the provider needs it.",
    )
    session_seconds: int = Field(
        8 * 3600,
        ge=60,
        le=MAX_SESSION_SECONDS,
        description="How long a console session lasts after signing in (at most a day); then sign in again.",
    )
    session_secret: str | None = Field(
        None,
        description="Key that signs console sessions (use ${VAR}); every replica needs the same. Default: "
        "derived from the master key, so rotating the master key ends every session.",
    )
    label: str = Field("SSO", description="The provider's name on the sign-in button ('Sign in with <label>').")

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        cleaned = [d.strip().lower().lstrip("@") for d in value]
        for domain in cleaned:
            if not _DOMAIN.match(domain):
                raise ValueError(f"sso.allowed_domains: {domain!r} is not a domain name (e.g. example.com)")
        return cleaned

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> SsoConfig:
        if not self.enabled:
            return self
        missing = [name for name in ("issuer", "client_id", "redirect_url") if not getattr(self, name)]
        if missing:
            raise ValueError(f"sso.enabled needs {', '.join('sso.' + m for m in missing)}")
        if not self.allowed_domains:
            raise ValueError("sso.enabled needs sso.allowed_domains: sign-in is restricted to those email domains")
        for name in ("issuer", "redirect_url"):
            url = str(getattr(self, name))
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"sso.{name} must be an https:// URL (http:// only for a provider on loopback)")
        if "openid" not in self.scopes:
            raise ValueError("sso.scopes must include 'openid'")
        return self
